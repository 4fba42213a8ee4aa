"""The results feed (qc_daemon/feed.py): what every producer sends and every reader accepts."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qc_daemon import feed
from qc_daemon.session import scan_messages
from qc_daemon.sources.simulate import SimulationParams, simulate_scan


@pytest.fixture(scope="module")
def messages():
    sim = simulate_scan(SimulationParams(n_coils=2, n_points=512, averages=16, seed=3, events=[]))
    return scan_messages(sim.scan, sim.transients)


def test_every_message_of_a_scan_round_trips_and_is_numbered_once(messages):
    kinds = [m["type"] for m in messages]
    assert kinds[0] == feed.SCAN_START and kinds[-1] == feed.SUMMARY and feed.RESULT in kinds and \
        feed.PROGRESS in kinds
    assert [m["feed_seq"] for m in messages] == list(range(1, len(messages) + 1))
    for m in messages:
        frames = feed.encode(m)
        assert frames[0] == m["scan_id"].encode()
        assert feed.decode(frames) == json.loads(json.dumps(m))
    # the scan_start tells a viewer what the checks that run declare, by name
    assert [c["name"] for c in messages[0]["checks"]] == ["frequency", "linewidth", "motion", "snr"]


def test_daemon_messages_go_on_the_daemon_topic():
    beat = feed.heartbeat(time=1.0, feed_seq=3, daemon_id="abc", scan_id=None, error=None)
    assert feed.encode(beat)[0] == feed.DAEMON_TOPIC
    assert feed.decode(feed.encode(feed.status("warn", "spool full", 3)))["detail"] == "spool full"


def test_the_stamper_is_the_one_numbering():
    s = feed.Stamper(first_seq=5)
    a, b = s.stamp("x", feed.status("ok", "", 0)), s.stamp("y", {"type": feed.RESULT})
    assert (a["feed_seq"], b["feed_seq"], b["scan_id"], s.feed_seq) == (5, 6, "y", 6)


@pytest.mark.parametrize("mutate, words", [
    (lambda m: m.pop("feed_seq"), "feed_seq"),
    (lambda m: m.update(feed_seq=True), "feed_seq"),
    (lambda m: m.update(feed_seq=-1), "< 0"),
    (lambda m: m["result"].pop("accepted"), "result.accepted"),
    (lambda m: m.update(result=[1, 2]), "'result'"),
    (lambda m: m.update(type=7), "type"),
])
def test_a_malformed_message_is_refused_with_its_reason(messages, mutate, words):
    m = json.loads(json.dumps(next(x for x in messages if x["type"] == feed.RESULT)))
    mutate(m)
    with pytest.raises(feed.FeedError, match=words):
        feed.decode([str(m.get("scan_id", "")).encode(), json.dumps(m).encode()])


def test_wrong_topic_nan_and_unknown_types(messages):
    m = next(x for x in messages if x["type"] == feed.RESULT)
    with pytest.raises(feed.FeedError, match="topic"):
        feed.decode([b"other", json.dumps(m).encode()])
    with pytest.raises(feed.FeedError, match="not JSON"):
        feed.decode([b"s", b'{"type": "result", "x": NaN}'])
    # a newer daemon's message type passes (viewers ignore what they do not know)
    assert feed.decode([b"s", b'{"type": "forecast", "x": 1}'])["type"] == "forecast"


def test_snapshot_reply_round_trip_and_validation(messages):
    seq, daemon_id, got = feed.decode_snapshot(feed.snapshot_reply(9, "d1", messages[:3]))
    assert (seq, daemon_id, len(got)) == (9, "d1", 3)
    with pytest.raises(feed.FeedError):
        feed.decode_snapshot(b'{"feed_seq": "9", "messages": []}')
    with pytest.raises(feed.FeedError):
        feed.decode_snapshot(feed.snapshot_reply(1, "d", [{"type": feed.RESULT}]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=0, max_size=3))
def test_decode_never_fails_otherwise_on_arbitrary_frames(frames):
    try:
        m = feed.decode(frames)
    except feed.FeedError:
        return
    assert isinstance(m, dict) and isinstance(m["type"], str)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8)
                           | st.floats(allow_nan=False, allow_infinity=False),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                      max_size=3), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(feed.SCAN_TYPES + feed.DAEMON_TYPES), st.dictionaries(
    st.sampled_from(["scan", "limits", "checks", "result", "summary", "spectrum", "feed_seq", "scan_id",
                     "daemon_id", "state", "detail"]), json_values, max_size=8))
def test_decode_of_json_objects_of_every_type_accepts_only_their_shape(kind, body):
    m = dict(body, type=kind)
    topic = feed.DAEMON_TOPIC if kind in feed.DAEMON_TYPES else str(m.get("scan_id", "")).encode()
    try:
        got = feed.decode([topic, json.dumps(m).encode()])
    except feed.FeedError:
        return
    for key, types in feed.REQUIRED[kind].items():
        assert isinstance(got[key], types)
