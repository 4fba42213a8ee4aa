"""The interface every check implements, and discovery through the ``mrsqc.checks`` entry-point group.

A check sees each transient twice:
1. ``measure(ctx)``: before the accept decision. Returns metrics, public fields and *flags* (reasons to reject).
2. ``update(ctx, qc)``: after the engine accepted or rejected the transient and (if accepted) added it to the
   running average. Running quantities (running SNR, linewidth of the running average) are filled in here.
At the end, ``finish(scan_ctx)`` returns summary fields and findings (severity + words) for the verdict.

Checks never see network input or files; they get arrays and numbers from the engine.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .model import ScanInfo, Transient, TransientQC
from .spectral import SpectralAxis
from .tracking import Prediction

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mrsqc.checks"

OK, WARN, FAIL = "pass", "warn", "fail"
SEVERITY_RANK = {OK: 0, WARN: 1, FAIL: 2}


@dataclass
class Registration:
    """Result of registering a transient to its reference: it equals c * ref * exp(i 2 pi f t) * exp(-pi d t).

    ``freq_hz`` (+ = towards higher ppm), ``phase_deg`` = angle(c), ``amplitude`` = |c| (1 = as strong as the
    reference mean), ``damping_hz`` extra Lorentzian FWHM vs the reference (Hz).
    """

    freq_hz: float
    phase_deg: float
    amplitude: float
    damping_hz: float
    is_reference: bool = False  # True for the first transient of a set: it *is* the reference
    residual_norm: float = float("nan")  # least-squares misfit / expected noise energy (1 = noise only)
    matched_amplitude: float = 1.0  # |c| with d = 0: peak-height-like ratio to the reference
    # single-shot uncertainty and its parts (qc_daemon/freq_model.py; NaN where not measured)
    freq_sd_hz: float = float("nan")  # SD of freq_hz from the fit (curvature of its least-squares quality)
    phase_sd_deg: float = float("nan")
    freq_metab_hz: float = float("nan")  # the metabolite band's own estimate and SD
    freq_metab_sd_hz: float = float("nan")
    freq_water_hz: float = float("nan")  # the residual water's own estimate and SD (NaN: no water fit)
    freq_water_sd_hz: float = float("nan")
    water_misfit: float = float("nan")  # water fit residual / expected noise energy (1 = template shape)
    freq_model: str = ""  # which components made freq_hz: "metabolites+water" | "metabolites (why not water)"


@dataclass
class TransientContext:
    """What the engine hands to each check for one transient."""

    scan: ScanInfo
    config: Config
    transient: Transient
    axis: SpectralAxis
    fid: np.ndarray  # coil-combined FID, complex128 (noise ~unit variance)
    reg: Registration
    freq_pred_hz: float  # causal trend prediction for this transient (Hz), before it was measured
    spec: np.ndarray  # spectrum of the aligned transient, in the reference's phase frame
    ref_spec: np.ndarray | None  # spectrum of the reference mean before this transient (same frame)
    noise_sd: float  # SD of Re(spec) noise (see snr docs for the window)
    noise_window: str
    n_accepted_before: int
    calibration: bool = False  # one of the held first transients that seeded the reference (self-biased fit)
    freq_pred_var_hz2: float = float("nan")  # variance of freq_pred_hz from the trend's scatter (Hz^2)
    prediction: Prediction | None = None  # the causal frequency filter's prediction (tracking.py); None at first
    # filled in after the accept decision:
    running_spec: np.ndarray | None = None  # spectrum of the running mean of accepted transients of this set
    running_fid: np.ndarray | None = None
    running_noise_sd: float | None = None
    n_accepted: int = 0
    running_unavailable: str | None = None  # why running_* are None for this transient (calibration)


@dataclass
class Finding:
    """One line of the verdict: severity (pass/warn/fail) and the reason in words, with its key and value."""

    severity: str
    text: str
    key: str = ""
    value: Any = None


@dataclass
class CheckResult:
    """What ``measure`` returns: public TransientQC fields, extra metrics (units in names), and flags."""

    fields: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    unmeasured: dict[str, str] = field(default_factory=dict)  # null field/metric -> reason in words


@dataclass
class ScanContext:
    """What ``finish`` sees: the scan, config and every result so far (acquisition order). ``final`` is False
    for a mid-scan (live) summary: a check may then skip whole-scan work, and must not change its state."""

    scan: ScanInfo
    config: Config
    results: list[TransientQC]
    final: bool = True


@dataclass
class SummaryPart:
    """What ``finish`` returns: summary fields, findings, details, and for every field it leaves null the
    reason in words (``unmeasured``). A field that could not be measured never produces a WARN/FAIL."""

    fields: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    unmeasured: dict[str, str] = field(default_factory=dict)


class Check(Protocol):
    """A QC check. Implementations live in ``plugins/`` or any package declaring an ``mrsqc.checks`` entry point."""

    name: str

    def start(self, scan: ScanInfo, config: Config) -> None: ...

    def measure(self, ctx: TransientContext) -> CheckResult: ...

    def update(self, ctx: TransientContext, qc: TransientQC) -> None: ...

    def finish(self, ctx: ScanContext) -> SummaryPart: ...


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict:
    """The registered checks, scanned once per process (scanning installed metadata takes ~10 ms)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def discover_checks(names: list[str] | None = None) -> list[type]:
    """Check classes registered under ``mrsqc.checks``, sorted by entry-point name (a stable order).

    ``names`` selects a subset; an unknown name is an error listing the available ones.
    """
    eps = _entry_points()
    if not eps:
        raise RuntimeError(
            f"no checks registered under the entry-point group {ENTRY_POINT_GROUP!r}: is mrsqc installed "
            "(pip install -e .)?")
    chosen = sorted(eps) if names is None else list(names)
    unknown = [n for n in chosen if n not in eps]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; available: {sorted(eps)}")
    return [eps[n].load() for n in chosen]
