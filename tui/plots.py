"""The three live plots (frequency, running SNR, spectrum), built from a ScanState on the braille canvas.

Every plot names its quantity, unit and sign convention in its title; the same definitions are in
docs/results.md and docs/tui.md.
"""

from __future__ import annotations

import numpy as np
from textual.widget import Widget

from qc_daemon import display

from . import braille
from .scan_state import ScanState, as_float

ACCEPTED, FLAGGED, TREND, AVERAGE, LATEST, BAND, PROJECTION, TARGET = (
    "cyan", "bold red", "yellow", "bold green", "grey50", "on #3a3a00", "grey62", "magenta")


Label = str | tuple[str, ...]  # a title or subtitle: one text, or variants from longest to shortest


def fitting(label: Label, width: int) -> str:
    """The longest variant that fits ``width`` cells (a border's title room), else the shortest."""
    variants = (label,) if isinstance(label, str) else label
    return next((v for v in variants if len(v) <= width), variants[-1])


class BraillePlot(Widget):
    """Shows a :class:`braille.Plot`; ``show(plot, title, subtitle)`` replaces it. Titles and subtitles may
    come in variants (longest first): the one that fits the border is shown, so a narrow terminal keeps the
    numbers (units, band, shift) and loses words."""

    DEFAULT_CSS = "BraillePlot { border: round $primary-darken-1; height: 1fr; }"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.plot = braille.Plot()
        self._labels: tuple[Label, Label] = ("", "")

    def show(self, plot: braille.Plot, title: Label, subtitle: Label = "") -> None:
        self.plot = plot
        self._labels = (title, subtitle)
        self._fit_labels()
        self.refresh()

    def on_resize(self) -> None:
        self._fit_labels()

    def _fit_labels(self) -> None:
        room = max(8, self.size.width - 5)  # the border corners and the padding Textual puts around a title
        title, subtitle = self._labels
        self.border_title = fitting(title, room)
        self.border_subtitle = fitting(subtitle, room)

    def render(self):
        return braille.render(self.plot, self.content_size.width, self.content_size.height)


def _not_offered(what: str) -> tuple[braille.Plot, str, str]:
    return braille.Plot(empty_text=f"{what}: no check that ran offers this view"), what, ""


def trace_plot(st: ScanState) -> tuple[braille.Plot, str, str]:
    """The declared trace (plugin_api.TracePlot; the frequency check's): per-transient shift (dots; red =
    flagged), the causal trend (line), the warning band (shaded)."""
    spec = st.trace
    if spec is None:
        return _not_offered("trace")
    rows = st.metabolites
    series = st.freq_series
    idx, freq, trend = (np.asarray(series[k]) for k in ("average", "points", "line"))
    ok = np.asarray(series["accepted"]) > 0.5
    warn = st.limits.get(spec["band"])
    plot = braille.Plot(x_label="average", x_integer=True, empty_text="frequency: waiting for the first averages")
    if warn:
        plot.band(-warn, warn, BAND)
    plot.rule(0.0, "grey35")
    plot.line(idx, trend, TREND).points(idx[ok], freq[ok], ACCEPTED).points(idx[~ok], freq[~ok], FLAGGED)
    if rows:
        plot.x_range = (1.0, max(float(idx.max()), float(st.scan.planned_averages), 2.0))
    rate = (st.summary or {}).get(spec["summary_rate"])
    if rate is None and rows:
        rate = display.value_of(rows[-1], spec["rate"])
    band = f" · band ±{warn:.1f} Hz" if warn else ""
    title = tuple(t.replace("{band}", band) for t in spec["titles"])
    drift = f"{rate:+.2f} Hz/min" if isinstance(rate, (int, float)) else "n/a"
    if rows and np.isfinite(trend[-1]):
        shift = f"{trend[-1]:+.2f} Hz ({trend[-1] / st.scan.f0_hz * 1e6:+.3f} ppm)"
        sub = (f"drift {drift} · trend {shift}", f"trend {shift} · {drift}", f"{shift} · {drift}", shift)
    else:
        sub = (f"drift {drift}",)
    return plot, title, sub


def growth_plot(st: ScanState) -> tuple[braille.Plot, str, str]:
    """The declared growth plot (plugin_api.GrowthPlot; the SNR check's): running SNR of edit set 0 against
    accepted averages, its projection to the planned end, and the target (when configured)."""
    spec = st.growth
    if spec is None:
        return _not_offered("growth")
    n = np.asarray(st.snr_series["count"])
    snr = np.asarray(st.snr_series["value"])
    per_set = max(1, st.scan.planned_averages // max(1, st.scan.n_sets))
    target = st.limits.get(spec["target"]) or 0.0
    plot = braille.Plot(x_label="averages", x_integer=True, empty_text="SNR: after the first 8 averages")
    plot.x_range = (0.0, float(max(per_set, np.nanmax(n) if n.size else 1.0)))
    title = spec["titles"][0]
    if not n.size:
        return plot, title, ""
    now_n, now = float(n[-1]), float(snr[-1])
    if target > 0:
        plot.rule(target, TARGET)
    row = next(r for r in reversed(st.metabolites) if r["set"] == 0 and display.value_of(r, spec["value"]) is not None)

    def latest(role: str):
        return display.value_of(row, spec[role])

    projected = latest("projected")
    growth = latest("exponent")  # measured by the check; sqrt(n) until it is
    if now_n < per_set and now_n > 0:
        k = np.linspace(now_n, per_set, 24)
        b = min(max(float(growth), 0.0), 0.5) if isinstance(growth, (int, float)) else 0.5
        plot.line(k, now * (k / now_n) ** b, PROJECTION)
    plot.line(n, snr, AVERAGE)
    parts = [f"now {now:.1f} ({now_n:.0f} averages)"]
    short = [f"{now:.1f} at {now_n:.0f}"]
    lo, hi = latest("lo"), latest("hi")
    if isinstance(projected, (int, float)):
        spread = f" ({lo:.0f}-{hi:.0f})" if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) else ""
        parts.append(f"projected {projected:.1f}{spread} at {per_set}")
        short.append(f"end {projected:.1f} at {per_set}")
    elif isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and now_n < per_set:
        parts.append(f"projected {lo:.0f}-{hi:.0f} at {per_set} (growth not measured yet)")
        short.append(f"end {lo:.0f}-{hi:.0f}")
    if target > 0:
        more = latest("to_target")
        status = "reached" if more == 0 else f"{more} more averages" if isinstance(more, int) else "n/a"
        parts.append(f"target {target:g}: {status}")
        short.append(f"target: {status}")
    return plot, spec["titles"], (" · ".join(parts), " · ".join(short), short[0])


def spectrum_plot(st: ScanState) -> tuple[braille.Plot, str, str]:
    """The latest transient (grey) and the running average (green), real part, ppm decreasing to the right."""
    sp = st.spectrum
    plot = braille.Plot(x_reversed=True, x_label="ppm", empty_text="spectrum: after the first 8 averages")
    title = ("Spectrum (units: noise SD of one transient)", "Spectrum (noise SD units)", "Spectrum")
    if not sp:
        return plot, title, ""
    n = len(sp["average"])
    ppm = np.linspace(sp["ppm_lo"], sp["ppm_hi"], n)
    latest = np.array([as_float(v) for v in sp["latest"]])
    average = np.array([as_float(v) for v in sp["average"]])
    plot.x_range = (float(ppm[0]), float(ppm[-1]))
    # the y range follows the average (its peaks), so one noisy transient cannot squash the plot
    finite = average[np.isfinite(average)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        span = max(hi - lo, 1.0)
        plot.y_range = (lo - 0.6 * span, hi + 0.25 * span)
    plot.line(ppm, np.clip(latest, *plot.y_range) if plot.y_range else latest, LATEST).line(ppm, average, AVERAGE)
    latest_name = st.ordinal.get(sp["index"], f"#{sp['index']}")
    return plot, title, (f"grey: latest ({latest_name}) · green: average of {sp['n_average']}",
                         f"grey {latest_name} · green: mean of {sp['n_average']}", f"mean of {sp['n_average']}")
