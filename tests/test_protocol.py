"""The wire protocol: round trips, signatures, stream rules, and fuzzing of the decoder."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qc_daemon import protocol
from qc_daemon.protocol import ProtocolError, StreamState, decode, decode_reply, to_transient
from qc_daemon.sources.simulate import SimulationParams, simulate_scan

KEY = b"0123456789abcdef-test-key"


@pytest.fixture(scope="module")
def sim():
    return simulate_scan(SimulationParams(n_coils=2, n_points=128, averages=3, seed=1, events=[]))


def test_round_trip_of_every_kind(sim):
    scan = sim.scan
    msg = decode(protocol.scan_start(scan, 0, "p", stream="s1"))
    assert msg.kind == "scan_start" and msg.header["scan"] == scan.to_dict() and msg.header["stream"] == "s1"
    t = sim.transients[1]
    msg = decode(protocol.transient(scan.scan_id, t, 1, "p", pos=7, stream="s1"))
    got = to_transient(msg, scan)
    assert np.array_equal(got.data, t.data) and (got.index, got.kind, got.time_s) == (t.index, t.kind, t.time_s)
    assert msg.header["pos"] == 7
    end = decode(protocol.scan_end(scan.scan_id, 2, "incomplete", n_transients=9, stream="s1")).header
    assert end["status"] == "incomplete" and end["n_transients"] == 9
    assert decode(protocol.heartbeat(3)).kind == "heartbeat"


@pytest.mark.parametrize("key", [None, KEY])
def test_replies_round_trip_and_are_signed(key):
    a = decode_reply(protocol.ack("scan", 5, 40, 38, "d" * 32, error="spool full", key=key, stream="s1"), key)
    assert a.kind == "ack" and (a.header["received"], a.header["durable"], a.header["error"]) == (40, 38, "spool full")
    r = decode_reply(protocol.reject("scan", 6, "gap", "expected 40", "d" * 32, expected=40, key=key, stream="s1"),
                     key)
    assert r.kind == "reject" and r.header["expected"] == 40 and r.header["stream"] == "s1"
    if key:
        forged = protocol.ack("scan", 5, 99, 99, "d" * 32, stream="s1")
        with pytest.raises(ProtocolError, match="bad_signature|frame_count"):
            decode_reply(forged, key)


def test_messages_of_a_scan_need_a_stream_id(sim):
    frames = protocol.transient(sim.scan.scan_id, sim.transients[0], 0, "p", stream="")
    with pytest.raises(ProtocolError, match="stream"):
        decode(frames)


@given(st.lists(st.binary(max_size=200), min_size=0, max_size=4))
@settings(max_examples=300, deadline=None)
def test_reply_decoder_never_fails_on_random_frames_except_with_protocol_error(frames):
    try:
        decode_reply(frames)
    except ProtocolError:
        pass


def test_signature_covers_every_frame(sim):
    frames = [bytes(f) for f in protocol.transient(sim.scan.scan_id, sim.transients[0], 0, key=KEY, stream="s")]
    assert decode(frames, KEY).kind == "transient"
    for i in range(len(frames) - 1):
        bad = list(frames)
        bad[i] = bad[i][:-1] + bytes([bad[i][-1] ^ 1])  # one flipped bit in any frame, payload included
        with pytest.raises(ProtocolError, match="version" if i == 0 else "bad_signature"):
            decode(bad, KEY)
    with pytest.raises(ProtocolError, match="bad_signature"):
        decode(protocol.transient(sim.scan.scan_id, sim.transients[0], 0, stream="s"), KEY)  # unsigned


def test_stream_rules(sim):
    state = StreamState()
    state.check_seq(decode(protocol.heartbeat(5, "p")))
    with pytest.raises(ProtocolError, match="seq_order"):
        state.check_seq(decode(protocol.heartbeat(5, "p")))  # duplicate
    state.check_seq(decode(protocol.heartbeat(9, "p")))
    assert state.gaps == 3
    nan = sim.transients[0].data.copy()
    nan[0, 3] = np.nan
    bad = protocol.transient(sim.scan.scan_id, type(sim.transients[0])(0, 0, 0, "metabolite", 0.0, nan), 10, "p",
                             stream="s")
    with pytest.raises(ProtocolError, match="not_finite"):
        to_transient(decode(bad), sim.scan)
    wrong = protocol.transient(sim.scan.scan_id, type(sim.transients[0])(0, 0, 0, "metabolite", 0.0,
                                                                          np.zeros((3, 8), np.complex64)), 11,
                               stream="s")
    with pytest.raises(ProtocolError, match="bad_shape"):
        to_transient(decode(wrong), sim.scan)


@pytest.mark.parametrize("header,payload,reason", [
    ({"kind": "transient", "scan_id": "s", "seq": 1, "stream": "x", "pos": 0, "index": 0, "average": 0, "set": 0,
      "transient_kind": "metabolite", "time_s": 0.0, "shape": [2, 4], "dtype": "<c8"}, b"\0" * 63, "bad_size"),
    ({"kind": "transient", "scan_id": "s", "seq": 1, "stream": "x", "pos": -1, "index": 0, "average": 0, "set": 0,
      "transient_kind": "metabolite", "time_s": 0.0, "shape": [2, 4], "dtype": "<c8"}, b"\0" * 64, "bad_field"),
    ({"kind": "scan_end", "scan_id": "s", "seq": 1, "stream": "x", "status": "complete"}, None, "bad_field"),
    ({"kind": "transient", "scan_id": "s", "seq": 1, "stream": "x", "pos": 0, "index": 0, "average": 0, "set": 0,
      "transient_kind": "metabolite", "time_s": 0.0, "shape": [2, 4], "dtype": "<f8"}, b"\0" * 64, "bad_dtype"),
    ({"kind": "transient", "scan_id": "s", "seq": "1"}, b"", "bad_field"),
    ({"kind": "transient", "scan_id": "s", "seq": 1, "index": -1}, b"", "bad_field"),
    ({"kind": "explode", "scan_id": "s", "seq": 1}, None, "unknown_kind"),
    ({"kind": "scan_end", "scan_id": "s", "seq": 1, "stream": "x", "n_transients": 0, "notes": "x"}, None,
     "bad_field"),
    ({"kind": "scan_end", "scan_id": "s", "seq": 1, "stream": "x", "n_transients": 0, "notes": ["y" * 501]}, None,
     "bad_field"),
    ({"kind": "scan_start", "scan_id": "s", "seq": 1, "stream": "x", "scan": {"scan_id": "s"}}, None, "bad_scan"),
    ({"kind": "heartbeat", "scan_id": "s", "seq": 1}, b"x", "frame_count"),
    ({"kind": "transient", "scan_id": "s", "seq": 1, "stream": "x", "pos": 0, "index": 0, "average": 0, "set": 0,
      "transient_kind": "metabolite", "time_s": float("inf"), "shape": [1, 1], "dtype": "<c8"}, b"\0" * 8,
     "bad_json"),
    ({"kind": "transient", "scan_id": "s", "seq": 1, "stream": "x", "pos": 0, "index": 0, "average": 0, "set": 0,
      "transient_kind": "metabolite", "time_s": 0, "shape": [1 << 21, 1 << 21], "dtype": "<c8"}, b"\0" * 8,
     "bad_shape"),
])
def test_malformed_headers_are_rejected_with_a_reason(header, payload, reason):
    frames = [protocol.VERSION, json.dumps(header).encode()] + ([payload] if payload is not None else [])
    with pytest.raises(ProtocolError) as err:
        decode(frames)
    assert err.value.reason == reason


_SCAN = {"scan_id": "s", "f0_hz": 123.2e6, "dwell_s": 5e-4, "n_points": 1024, "n_coils": 4, "planned_averages": 8}


@pytest.mark.parametrize("notes", ["one text, not a list", [1, 2], ["x" * 501], ["n"] * 33, {"a": 1}])
def test_scan_notes_that_are_not_a_short_list_of_short_texts_are_a_bad_scan(notes):
    header = {"kind": "scan_start", "scan_id": "s", "seq": 1, "stream": "x", "scan": {**_SCAN, "notes": notes}}
    with pytest.raises(ProtocolError) as err:
        decode([protocol.VERSION, json.dumps(header).encode()])
    assert err.value.reason == "bad_scan"
    ok = {**header, "scan": {**_SCAN, "notes": ["2x oversampling (removed after coil combination)"]}}
    assert decode([protocol.VERSION, json.dumps(ok).encode()]).header["scan"]["notes"] == [
        "2x oversampling (removed after coil combination)"]


@given(st.lists(st.binary(max_size=300), min_size=0, max_size=5))
@settings(max_examples=400, deadline=None)
def test_decoder_never_fails_on_random_frames_except_with_protocol_error(frames):
    try:
        decode(frames)
    except ProtocolError:
        pass


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                           max_leaves=10)


@given(kind=st.sampled_from(protocol.MESSAGE_KINDS + ("x",)),
       fields=st.dictionaries(st.sampled_from(["scan_id", "seq", "index", "average", "set", "transient_kind",
                                               "time_s", "shape", "dtype", "scan", "status", "producer", "stream",
                                               "pos", "n_transients"]),
                              json_values, max_size=8),
       payload=st.one_of(st.none(), st.binary(max_size=64)),
       cut=st.integers(0, 40))
@settings(max_examples=400, deadline=None)
def test_decoder_on_wrong_types_and_truncated_headers(kind, fields, payload, cut):
    header = json.dumps(dict(fields, kind=kind)).encode()
    for h in (header, header[:cut]):
        try:
            decode([protocol.VERSION, h] + ([payload] if payload is not None else []))
        except ProtocolError:
            pass
