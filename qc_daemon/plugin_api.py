"""The check contract (docs/plugins.md): what a check declares, what it is shown, what it returns.

A check is a class registered under the ``mrsqc.checks`` entry-point group. It has a ``name`` (its config
section, its key in ``summary.details``) and a ``declaration`` (:class:`Declaration`): every value it can
produce with its unit and definition, its flags and findings, its config section, the limits and the views
it offers viewers. It sees each transient twice:

1. ``measure(ctx)``: before the engine's accept decision. Returns a :class:`CheckResult`: top-level fields,
   metrics, *flags* (reasons to reject), and the reason for every value it leaves null.
2. ``update(ctx, accepted, measured)``: after the decision (and, if accepted, after the transient joined the
   running average). Returns running values (running SNR, linewidth of the running average) the same way;
   ``measured`` is what its own ``measure`` returned for this transient (``measured.keep`` carries state
   from one to the other, never published).

At the end, ``finish(scan_ctx)`` returns a :class:`SummaryPart`: summary fields, findings (severity + words)
for the verdict, details. ``limits(scan, config)`` gives the thresholds a viewer draws, at the scan's f0.

The engine merges what the checks return into the results; a name a check did not declare is a
:class:`ContractError`. Checks mutate nothing they are handed, never see network input or files, and get
arrays and numbers from the engine.
"""

from __future__ import annotations

import functools
import logging
import math
import string
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .model import (  # noqa: F401 (OK ... grade re-exported for checks)
    FAIL,
    OK,
    SEVERITY_RANK,
    WARN,
    ScanInfo,
    ScanSummary,
    Transient,
    TransientQC,
    grade,
)
from .spectral import SpectralAxis
from .tracking import Prediction

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mrsqc.checks"


class ContractError(RuntimeError):
    """A check broke the contract: it returned a name it did not declare, or two checks declare one name."""


# ---------------------------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Metric:
    """One value a check produces. ``unit``: Hz, ppm, deg, Hz/min, s, 1 (a ratio), count, or "" (text, lists).
    ``label``: a few words for viewers and the text summary ("water linewidth")."""

    name: str
    unit: str
    definition: str
    label: str = ""


@dataclass(frozen=True)
class Recovered:
    """How a summary field is rebuilt from journaled per-transient results when a scan is closed from its
    journal alone (no spool to re-run the engine on): ``how`` (last | median) of ``source`` (a field or
    metric) over the results of ``kind``."""

    source: str
    kind: str
    how: str = "last"


@dataclass(frozen=True)
class SummaryField(Metric):
    """A value in the scan summary (top level of summary.json)."""

    recovered: Recovered | None = None


@dataclass(frozen=True)
class Flag:
    """A reason to reject a transient. ``frequency_outlier``: only its frequency is off (a jump): the engine's
    frequency tracking still sees it, so a run of them that agree restarts the tracking there."""

    name: str
    definition: str
    frequency_outlier: bool = False


@dataclass(frozen=True)
class FindingKind:
    """A finding a check can add to the verdict: its key, the severities it can have, and when."""

    key: str
    severities: tuple[str, ...]
    definition: str


@dataclass(frozen=True)
class Limit:
    """A threshold at this scan: ``name`` is its key in the feed's ``scan_start.limits`` (Hz at the scan's
    f0, say); it applies to ``metric``; ``level``: warn | fail | target."""

    name: str
    metric: str
    level: str
    value: float
    unit: str


Rule = tuple[float, float, bool]  # (low, high, low inclusive): a number's allowed range


@dataclass(frozen=True)
class ConfigSpec:
    """A config section: its defaults (each value's type is its default's: number, whole number in
    ``integers``, a list of as many numbers, a list of names, bool, text) and the rules beyond the type.

    ``ranges``: key -> (low, high, low inclusive); keys ending ``_fraction`` default to 0 < v <= 1, other
    numbers to > 0. ``unordered``: two-number lists that are not [low, high]. ``warn_before_fail``: (warn
    key, fail key) pairs. ``rule``: cross-key rule, the section -> a problem in words or None.
    """

    defaults: dict[str, Any]
    integers: frozenset[str] = frozenset()
    ranges: dict[str, Rule] = field(default_factory=dict)
    unordered: frozenset[str] = frozenset()
    warn_before_fail: tuple[tuple[str, str], ...] = ()
    rule: Any = None  # Callable[[dict], str | None]


# Display: what a viewer draws, by role. Viewers (tui/, the text view, the text summary) know these roles,
# never a check's metric names: they take the names from here, and show nothing for a check that did not run.
@dataclass(frozen=True)
class PanelRow:
    """A row of the live view's metrics panel: ``metric`` (field or metric) of the latest transient of
    ``kind``, or the summary field ``summary`` when the summary has it. ``suffix``: text after the number
    (" Hz", "°"). ``ppm``: also show it in ppm with the ``warn`` limit, coloured by ``warn``/``fail``
    (limit names); else ``note`` follows in dim. ``missing``: shown for null; ``missing_kind`` when no
    transient of ``kind`` has arrived yet. Rows are shown in ``order``."""

    label: str
    metric: str
    kind: str
    order: int
    fmt: str = ".1f"
    suffix: str = ""
    summary: str = ""
    ppm: bool = False
    warn: str = ""
    fail: str = ""
    note: str = ""
    missing: str = "n/a"
    missing_kind: str = ""


@dataclass(frozen=True)
class Column:
    """A column of the per-transient tables: ``name`` and ``unit`` head it; ``metric`` of each result of
    ``kinds``, formatted ``fmt`` in ``width`` cells in the text view's lines (n/a when null), and
    ``table_fmt`` in the live view's flagged-transient table ("" = not a column there)."""

    name: str
    unit: str
    metric: str
    order: int
    fmt: str = ".1f"
    width: int = 7
    kinds: tuple[str, ...] = ("metabolite", "water_ref")
    table_fmt: str = ""


@dataclass(frozen=True)
class TracePlot:
    """The live view's trace per average: ``points`` per metabolite transient (flagged ones marked),
    ``line`` through them, a band +-``band`` (a limit name), the rate ``rate`` (per transient) or
    ``summary_rate`` (summary). Titles from longest to shortest; ``{band}`` is replaced."""

    points: str
    line: str
    band: str
    rate: str
    summary_rate: str
    titles: tuple[str, ...]


@dataclass(frozen=True)
class GrowthPlot:
    """The live view's growth plot: ``value`` of edit set 0 against ``count``, projected to the planned
    end with the exponent ``exponent`` (sqrt(n) until it is measured), its range ``lo``..``hi``, the
    averages still needed ``to_target`` for the limit ``target``."""

    value: str
    count: str
    projected: str
    exponent: str
    lo: str
    hi: str
    to_target: str
    target: str
    titles: tuple[str, ...]


@dataclass(frozen=True)
class SummaryLine:
    """A line of the text summary: ``template`` formatted with the summary (``{key:.2f|Hz}``: the value to
    2 decimals with its unit, n/a when null; ``{details[key]}`` reads details)."""

    template: str
    order: int


@dataclass(frozen=True)
class Display:
    panel: tuple[PanelRow, ...] = ()
    columns: tuple[Column, ...] = ()
    trace: TracePlot | None = None
    growth: GrowthPlot | None = None
    summary_lines: tuple[SummaryLine, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Declaration:
    """Everything a check contributes (docs/plugins.md). ``fields``: top-level per-transient values
    (``TransientQC`` / transients.jsonl); ``metrics``: per-transient metrics; ``summary``: summary fields;
    ``flags`` and ``findings``; ``config``: its config section (named after the check); ``display``."""

    fields: tuple[Metric, ...] = ()
    metrics: tuple[Metric, ...] = ()
    summary: tuple[SummaryField, ...] = ()
    flags: tuple[Flag, ...] = ()
    findings: tuple[FindingKind, ...] = ()
    config: ConfigSpec = ConfigSpec({})
    display: Display = Display()


# ---------------------------------------------------------------------------------------------- what it sees
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
    """What the engine hands to each check for one transient (read-only; the scan and the config come with
    ``start``)."""

    transient: Transient
    axis: SpectralAxis
    fid: np.ndarray  # coil-combined FID, complex128 (noise ~unit variance)
    reg: Registration
    freq_pred_hz: float  # causal trend prediction for this transient (Hz), before it was measured
    spec: np.ndarray  # spectrum of the aligned transient, in the reference's phase frame
    ref_spec: np.ndarray | None  # spectrum of the reference mean before this transient (same frame)
    noise_sd: float  # SD of Re(spec) noise ([noise] config section: the window and its fallbacks)
    calibration: bool = False  # one of the held first transients that seeded the reference (self-biased fit)
    freq_pred_var_hz2: float = float("nan")  # variance of freq_pred_hz from the trend's scatter (Hz^2)
    prediction: Prediction | None = None  # the causal frequency filter's prediction (tracking.py); None at first
    # filled in after the accept decision:
    running_spec: np.ndarray | None = None  # spectrum of the running mean of accepted transients of this set
    running_fid: np.ndarray | None = None
    running_noise_sd: float | None = None
    n_accepted: int = 0  # accepted transients in that running mean
    running_unavailable: str | None = None  # why running_* are None for this transient (calibration)


# ---------------------------------------------------------------------------------------------- what it returns
@dataclass
class Finding:
    """One line of the verdict: severity (pass/warn/fail) and the reason in words, with its key and value."""

    severity: str
    text: str
    key: str = ""
    value: Any = None


@dataclass(slots=True)
class CheckResult:
    """What ``measure`` and ``update`` return: declared top-level fields, declared metrics (units in names),
    flags (``measure`` only), the reason for every null (``unmeasured``), and ``keep``: the check's own state
    from ``measure`` to ``update`` of the same transient (never published)."""

    fields: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    unmeasured: dict[str, str] = field(default_factory=dict)  # null field/metric -> reason in words
    keep: Any = None


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
    declaration: Declaration

    def start(self, scan: ScanInfo, config: Config) -> None: ...

    def measure(self, ctx: TransientContext) -> CheckResult: ...

    def update(self, ctx: TransientContext, accepted: bool, measured: CheckResult) -> CheckResult: ...

    def finish(self, ctx: ScanContext) -> SummaryPart: ...

    def limits(self, scan: ScanInfo, config: Config) -> list[Limit]: ...


# ---------------------------------------------------------------------------------------------- discovery
@functools.lru_cache(maxsize=1)
def _entry_points() -> dict:
    """The registered checks, scanned once per process (scanning installed metadata takes ~10 ms)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def rescan_checks() -> None:
    """Forget the scanned entry points (after a check was installed or removed while running: tests)."""
    _entry_points.cache_clear()


def installed_checks() -> dict[str, type]:
    """Every check class registered under ``mrsqc.checks``, by entry-point name, sorted (a stable order)."""
    eps = _entry_points()
    if not eps:
        raise RuntimeError(
            f"no checks registered under the entry-point group {ENTRY_POINT_GROUP!r}: is mrsqc installed "
            "(pip install -e .)?")
    out = {}
    for name in sorted(eps):
        cls = eps[name].load()
        if getattr(cls, "name", None) != name or not isinstance(getattr(cls, "declaration", None), Declaration):
            raise ContractError(f"check {name!r} ({eps[name].value}) needs name = {name!r} and a Declaration "
                                "(docs/plugins.md)")
        out[name] = cls
    return out


def discover_checks(names: list[str] | None = None) -> list[type]:
    """Check classes registered under ``mrsqc.checks``, sorted by entry-point name. ``names`` selects a
    subset (in that order); an unknown name is an error listing the available ones."""
    installed = installed_checks()
    chosen = list(installed) if names is None else list(names)
    unknown = [n for n in chosen if n not in installed]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; available: {sorted(installed)}")
    return [installed[n] for n in chosen]


def active_checks(config: Config) -> list[type]:
    """The checks that run under ``config``: every installed one but those in ``[checks] disable``."""
    disabled = set(config.get("checks", {}).get("disable", []))
    return [cls for name, cls in installed_checks().items() if name not in disabled]


class Contract:
    """The declarations of the checks of one scan, checked once: names unique across checks; and the
    names in order, as the engine lays results out (fields in check order)."""

    def __init__(self, checks: list[Check]):
        self.checks = checks
        self.fields: dict[str, str] = {}  # field -> check
        self.metrics: dict[str, str] = {}
        self.summary: dict[str, str] = {}
        self.flags: dict[str, str] = {}
        for check in checks:
            d = check.declaration
            for table, items in ((self.fields, d.fields), (self.metrics, d.metrics), (self.summary, d.summary),
                                 (self.flags, d.flags)):
                for item in items:
                    if item.name in table:
                        raise ContractError(f"{item.name!r} is declared by both {table[item.name]!r} and "
                                            f"{check.name!r}")
                    table[item.name] = check.name
        for check in checks:
            _check_display(check)
        self._own = {c.name: (frozenset(m.name for m in c.declaration.fields),
                              frozenset(m.name for m in c.declaration.metrics),
                              frozenset(f.name for f in c.declaration.flags),
                              frozenset(m.name for m in c.declaration.summary)) for c in checks}
        self._nullable = {name: own[0] | own[1] | {"flags"} for name, own in self._own.items()}
        self.frequency_outliers = frozenset(f.name for c in checks for f in c.declaration.flags
                                            if f.frequency_outlier)

    def check_result(self, check: Check, res: CheckResult, flags_allowed: bool) -> None:
        fields, metrics, flags, _ = self._own[check.name]
        if res.fields.keys() <= fields and res.metrics.keys() <= metrics and \
                (not res.unmeasured or res.unmeasured.keys() <= self._nullable[check.name]) and \
                (not res.flags or (flags_allowed and flags.issuperset(res.flags))):
            return  # (per transient and check: the common case is the cheap one)
        bad = [k for k in res.fields if k not in fields] + [k for k in res.metrics if k not in metrics]
        bad += [k for k in res.unmeasured if k not in fields and k not in metrics and k != "flags"]
        if res.flags and not flags_allowed:
            bad += [f"flags {res.flags} (flags come from measure)"]
        bad += [k for k in res.flags if k not in flags]
        raise ContractError(f"check {check.name!r} returned undeclared {bad}")

    def check_summary(self, check: Check, part: SummaryPart) -> None:
        own = self._own[check.name][3]
        bad = [k for k in list(part.fields) + list(part.unmeasured) if k not in own]
        kinds = {f.key: f.severities for f in check.declaration.findings}
        bad += [f"finding {f.key!r} ({f.severity})" for f in part.findings if f.severity not in kinds.get(f.key, ())]
        if bad:
            raise ContractError(f"check {check.name!r} returned undeclared summary {bad}")

    def describe(self) -> list[dict[str, Any]]:
        """What a viewer needs to know of the checks (the feed's scan_start ``checks``): names, units and
        labels of their values, and their display."""
        def units(items) -> dict[str, dict[str, Any]]:
            out = {}
            for m in items:
                out[m.name] = {"unit": m.unit, "label": m.label}
                if isinstance(m, SummaryField):
                    out[m.name]["recovered"] = asdict(m.recovered) if m.recovered is not None else None
            return out
        return [{"name": c.name, "fields": units(c.declaration.fields), "metrics": units(c.declaration.metrics),
                 "summary": units(c.declaration.summary), "display": c.declaration.display.to_dict()}
                for c in self.checks]


def _check_display(check: Check) -> None:
    """Every name a check's display refers to is one it declares (a typo would show an empty row forever)."""
    d = check.declaration
    values = {m.name for m in d.fields + d.metrics}
    summary = {m.name for m in d.summary} | set(ScanSummary.__dataclass_fields__) - {"fields"}
    used = [(r.metric, values) for r in d.display.panel] + [(r.summary, summary) for r in d.display.panel if r.summary]
    used += [(c.metric, values) for c in d.display.columns]
    if d.display.trace is not None:
        t = d.display.trace
        used += [(t.points, values), (t.line, values), (t.rate, values), (t.summary_rate, summary)]
    if d.display.growth is not None:
        g = d.display.growth
        used += [(n, values) for n in (g.value, g.count, g.projected, g.exponent, g.lo, g.hi, g.to_target)]
    for line in d.display.summary_lines:
        fields = (name for _, name, _, _ in string.Formatter().parse(line.template) if name)
        used += [(name.split("[")[0].split(".")[0], summary) for name in fields]
    bad = sorted({name for name, allowed in used if name not in allowed})
    if bad:
        raise ContractError(f"check {check.name!r}: its display refers to {bad}, which it does not declare")


def limit_values(limits: list[Limit]) -> dict[str, float]:
    """Limits as the feed carries them: name -> value (finite floats)."""
    return {lim.name: float(lim.value) for lim in limits if math.isfinite(lim.value)}
