"""The one vocabulary every part of mrsqc speaks: scan info, transient, per-transient result, scan summary.

Conventions (see docs/results.md):
- Time-domain data are in mrsqc's frame: the ppm axis grows with frequency after an FFT (FSL-MRS's frame;
  NIfTI-MRS files store its conjugate, docs/results.md).
- Frequency shifts are the *measured* shift of a transient relative to the scan reference, in Hz;
  positive = towards higher ppm. The correction to apply is the negative.
- Phases are in degrees, relative to the scan reference.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

METABOLITE = "metabolite"
WATER_REF = "water_ref"
KINDS = (METABOLITE, WATER_REF)

#: ppm of the receiver (centre) frequency for 1H: water, as FSL-MRS and spec2nii use.
DEFAULT_CENTRE_PPM = 4.65

#: ScanSummary.status of a live, mid-scan summary (the others: complete, incomplete, interrupted).
RUNNING = "running"


#: The verdict vocabulary: the value in every file and message (pass | warn | fail), its rank, and the one
#: word shown for it on every screen, in the CLI and in the docs. A finding's severity uses the same values.
OK, WARN, FAIL = "pass", "warn", "fail"
SEVERITY_RANK = {OK: 0, WARN: 1, FAIL: 2}
VERDICT_WORDS = {OK: "PASS", WARN: "WARN", FAIL: "FAIL"}


def verdict_word(verdict: str) -> str:
    return VERDICT_WORDS.get(verdict, verdict.upper())


def grade(value: float, warn: float, fail: float = math.inf) -> str:
    """The one ladder from a value to a severity: FAIL above ``fail``, WARN above ``warn``, else OK (limits
    are exclusive: a value at the limit passes). For a value where low is bad, grade its negative."""
    if value > fail:
        return FAIL
    if value > warn:
        return WARN
    return OK


def worst(severities) -> str:
    """The worst of severities (OK for none)."""
    return max(severities, key=SEVERITY_RANK.__getitem__, default=OK)


class _CheckFields:
    """Attribute access to the values the checks contributed (``qc.freq_hz`` reads ``qc.fields["freq_hz"]``);
    a check that did not run contributes no attribute: reading one of its fields raises AttributeError."""

    def __getattr__(self, name: str) -> Any:
        fields = self.__dict__.get("fields")
        if fields is not None and name in fields:
            return fields[name]
        raise AttributeError(f"{type(self).__name__} has no {name!r} (no check that ran contributes it)")


def interruption_text(status: str, n_averages: int, planned: int) -> str:
    """The finding of a scan that did not end normally (status incomplete or interrupted). It counts averages
    (metabolite transients, as the scanner's counter does) against the planned averages."""
    return f"scan {status}: {n_averages} of {planned} planned averages checked"


MAX_SCAN_NOTES = 32
MAX_NOTE_CHARS = 500


@dataclass(frozen=True)
class ScanInfo:
    """What is known about a scan before its first transient arrives.

    Attributes carry their unit in the name: ``f0_hz`` spectrometer frequency (Hz), ``dwell_s`` time between
    points after oversampling removal (s), ``te_ms``/``tr_ms`` (ms). ``scan_id`` is an anonymous hash, never a
    patient identifier. ``oversampling``: transients carry ``n_points * oversampling`` samples per coil (raw
    ADC rate, as a scanner streams them); the engine removes the oversampling after coil combination.
    """

    scan_id: str
    f0_hz: float
    dwell_s: float
    n_points: int
    n_coils: int
    planned_averages: int
    te_ms: float | None = None
    tr_ms: float | None = None
    sequence: str = ""
    n_sets: int = 1
    nucleus: str = "1H"
    centre_ppm: float = DEFAULT_CENTRE_PPM
    combined: bool = False  # True when the file holds data already averaged on the scanner
    source: str = ""  # e.g. "twix VE", "dicom mrs-storage"; never a path with patient data
    voxel_mm: tuple[float, float, float] | None = None
    oversampling: int = 1
    #: what the reader established about the recording, in words ("2x oversampling (removed after coil
    #: combination)", water references recognised): the summary's first notes, live as offline
    notes: tuple[str, ...] = ()

    @property
    def samples_per_transient(self) -> int:
        """Samples per coil in a Transient (before oversampling removal)."""
        return self.n_points * self.oversampling

    @property
    def f0_mhz(self) -> float:
        return self.f0_hz / 1e6

    def validate(self) -> None:
        """Raise ValueError when a field is outside what a 1H SVS scan can have."""
        if not (1e6 < self.f0_hz < 2e9) or not math.isfinite(self.f0_hz):
            raise ValueError(f"f0 {self.f0_hz} Hz is not a plausible spectrometer frequency")
        if not (1e-6 < self.dwell_s < 1e-1) or not math.isfinite(self.dwell_s):
            raise ValueError(f"dwell {self.dwell_s} s is not plausible")
        if not (16 <= self.n_points <= 65536):
            raise ValueError(f"{self.n_points} points per transient is outside 16..65536")
        if not (1 <= self.n_coils <= 256):
            raise ValueError(f"{self.n_coils} coils is outside 1..256")
        if self.oversampling not in (1, 2, 4, 8):
            raise ValueError(f"oversampling {self.oversampling} is not 1, 2, 4 or 8")
        if self.planned_averages < 1 or self.n_sets < 1:
            raise ValueError("planned averages and edit sets must be >= 1")
        if len(self.notes) > MAX_SCAN_NOTES or not all(isinstance(n, str) and len(n) <= MAX_NOTE_CHARS
                                                       for n in self.notes):
            raise ValueError(f"notes must be at most {MAX_SCAN_NOTES} texts of at most {MAX_NOTE_CHARS} characters")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["voxel_mm"] = list(self.voxel_mm) if self.voxel_mm else None
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScanInfo:
        d = dict(d)
        if d.get("voxel_mm") is not None:
            d["voxel_mm"] = tuple(float(v) for v in d["voxel_mm"])
        if d.get("notes") is not None:
            if not isinstance(d["notes"], list | tuple):
                raise TypeError("notes must be a list of texts")
            d["notes"] = tuple(d["notes"])
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Transient:
    """One acquired transient (one average of one edit set), all coils.

    ``data``: complex64 array, coils x (points x oversampling), mrsqc's frame (ppm grows with frequency).
    ``time_s``: acquisition time since the scan start (s). ``index``: acquisition order (0-based). ``average``:
    the average counter. ``set``: edit set.
    """

    index: int
    average: int
    set: int
    kind: str
    time_s: float
    data: np.ndarray

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"transient kind {self.kind!r} is not one of {KINDS}")


@dataclass
class TransientQC(_CheckFields):
    """The QC result for one transient: the public per-transient record (docs/results.md).

    The engine owns the bookkeeping (index, average, set, kind, time_s, flags, accepted); every measured value
    comes from a check: ``fields`` holds the values the checks declared as top-level (for the built-in ones
    freq_hz, phase_deg, fwhm_hz, snr, snr_running), ``metrics`` every other measured value (names with
    units). ``flags``: reasons this transient is considered corrupted (empty = clean). ``unmeasured``: why a
    field or metric is null, in words.
    """

    index: int
    average: int
    set: int
    kind: str
    time_s: float
    fields: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    accepted: bool = True
    metrics: dict[str, Any] = field(default_factory=dict)
    #: why a metric is null: metric name -> reason in words ("no tCr peak above the local baseline")
    unmeasured: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "average": self.average,
            "set": self.set,
            "kind": self.kind,
            "time_s": _clean(self.time_s),
            **{k: _clean(v) for k, v in self.fields.items()},
            "flags": list(self.flags),
            "accepted": bool(self.accepted),
            "metrics": {k: _clean(v) for k, v in self.metrics.items()},
            "unmeasured": dict(self.unmeasured),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransientQC:
        """The inverse of to_dict: keys that are not the engine's are the checks' fields."""
        names = cls.__dataclass_fields__.keys()
        own = {k: v for k, v in d.items() if k in names and k != "fields"}
        return cls(**own, fields={k: v for k, v in d.items() if k not in names})


@dataclass
class ScanSummary(_CheckFields):
    """The end-of-scan (or so-far) summary; keys documented in docs/results.md. The engine owns the counts,
    the verdict and its reasons; ``fields`` holds the summary values the checks declared (for the built-in
    ones drift_hz_per_min, drift_total_hz, fwhm_water_hz, fwhm_metab_hz, noncausal_flagged_indices,
    snr_final, snr_projected), written at the top level of summary.json."""

    scan_id: str
    n_transients: int
    n_metabolite: int
    n_water_ref: int
    n_flagged: int
    flagged_indices: list[int]
    verdict: str
    reasons: list[str]
    fields: dict[str, Any] = field(default_factory=dict)
    status: str = "complete"  # complete | incomplete | interrupted | running (live, mid-scan)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    #: why a summary value is null or could not be judged: key -> reason in words
    unmeasured: dict[str, str] = field(default_factory=dict)
    #: "metabolite" (water-suppressed, with or without water references) or "water-only"
    scan_kind: str = "metabolite"
    #: program, version, config digest and the checks that ran (qc_daemon/provenance.py)
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["fields"]
        head = list(d.items())
        at = next(i for i, (k, _) in enumerate(head) if k == "verdict")
        d = dict(head[:at] + [(k, _clean_tree(v)) for k, v in self.fields.items()] + head[at:])
        for k, v in list(d.items()):
            if isinstance(v, float):
                d[k] = _clean(v)
        d["details"] = _clean_tree(d["details"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScanSummary:
        """The inverse of to_dict: keys that are not the engine's are the checks' fields."""
        names = cls.__dataclass_fields__.keys()
        own = {k: v for k, v in d.items() if k in names and k != "fields"}
        return cls(**own, fields={k: v for k, v in d.items() if k not in names})


@dataclass
class SpectrumView:
    """Spectra for display: the latest metabolite transient and the running average of its edit set.

    Both are real parts (absorption), aligned and phased like the reference, over ``ppm_lo..ppm_hi`` (ppm of
    the first and last point; points are evenly spaced and ppm grows with index), block-averaged to at most a
    few hundred points, and divided by the latest transient's noise SD: one transient's noise has SD 1 per
    spectral point in these units (less after block averaging). ``n_average``: accepted transients in the
    running average.
    """

    index: int
    set: int
    n_average: int
    ppm_lo: float
    ppm_hi: float
    latest: list[float]
    average: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "set": self.set, "n_average": self.n_average, "ppm_lo": _clean(self.ppm_lo),
                "ppm_hi": _clean(self.ppm_hi), "latest": [_round4(v) for v in self.latest],
                "average": [_round4(v) for v in self.average]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpectrumView:
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in d.items() if k in names})


def _round4(v: float) -> float | None:
    """4 significant digits (display data: a quarter of the bytes of full floats on the feed)."""
    f = float(v)
    return float(f"{f:.4g}") if math.isfinite(f) else None


def _clean(v: Any) -> Any:
    """JSON-safe scalar: numpy -> Python, NaN/Inf -> None, floats rounded to 6 significant decimals."""
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            return None
        return float(f"{f:.6g}")
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def _clean_tree(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _clean_tree(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean_tree(x) for x in v]
    return _clean(v)
