"""What viewers show of the checks, read from the checks' own declarations (plugin_api.Display).

Every viewer (the text summary, the plain-text view, the live view) draws a check's values through these
helpers, from the ``checks`` list of the feed's ``scan_start`` message (plugin_api.Contract.describe()): no
viewer names a check's metric, a check that did not run shows nothing, and a third-party check's declared
rows, columns and summary lines appear like the built-in ones. The spectrum shown live is shaped here too.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np

from .model import SpectrumView
from .spectral import SpectralAxis

Checks = list[dict[str, Any]]  # Contract.describe(): [{"name", "fields", "metrics", "summary", "display"}]


def value_of(result: dict[str, Any], name: str) -> Any:
    """A result dict's value ``name``: a top-level field, else a metric (None when neither has it)."""
    if name in result:
        return result[name]
    return (result.get("metrics") or {}).get(name)


def _items(checks: Checks, key: str) -> list[dict[str, Any]]:
    out = [item for c in checks for item in (c.get("display") or {}).get(key) or ()]
    return sorted(out, key=lambda item: item.get("order", 0))


def panel_rows(checks: Checks) -> list[dict[str, Any]]:
    return _items(checks, "panel")


def columns(checks: Checks) -> list[dict[str, Any]]:
    return _items(checks, "columns")


def table_columns(checks: Checks) -> list[dict[str, Any]]:
    return [c for c in columns(checks) if c.get("table_fmt")]


def _first(checks: Checks, key: str) -> dict[str, Any] | None:
    return next((c["display"][key] for c in checks if (c.get("display") or {}).get(key)), None)


def trace(checks: Checks) -> dict[str, Any] | None:
    """The first declared trace plot (plugin_api.TracePlot), or None."""
    return _first(checks, "trace")


def growth(checks: Checks) -> dict[str, Any] | None:
    """The first declared growth plot (plugin_api.GrowthPlot), or None."""
    return _first(checks, "growth")


def summary_labels(checks: Checks) -> dict[str, tuple[str, str]]:
    """Summary field -> (label, unit), for the fields a check gave a label."""
    return {name: (m["label"], m["unit"]) for c in checks for name, m in (c.get("summary") or {}).items()
            if m.get("label")}


def column_header(col: dict[str, Any]) -> str:
    return f"{col['name']}/{col['unit']}" if col["unit"] else col["name"]


def column_cell(result: dict[str, Any], col: dict[str, Any]) -> str:
    """A result's value in a column of the text view: right-aligned in the column's width; n/a when null or
    of another kind."""
    v = value_of(result, col["metric"]) if result.get("kind") in col["kinds"] else None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return format(v, f"{col['width']}{col['fmt']}")
    return f"{'n/a':>{col['width']}}"


class _Template(string.Formatter):
    """``{key:.2f|Hz}``: the value with 2 decimals and its unit; n/a for null or missing."""

    def get_field(self, field_name, args, kwargs):
        try:
            return super().get_field(field_name, args, kwargs)
        except (KeyError, IndexError, TypeError):
            return None, field_name

    def get_value(self, key, args, kwargs):
        return kwargs.get(key)

    def format_field(self, value, format_spec):
        spec, _, unit = format_spec.partition("|")
        if value is None:
            return "n/a"
        text = format(value, spec)
        return f"{text} {unit}" if unit else text


def summary_text_lines(checks: Checks, summary: dict[str, Any]) -> list[str]:
    """The checks' declared lines of the text summary, filled in from a summary dict."""
    return [_Template().vformat(line["template"], (), summary) for line in _items(checks, "summary_lines")]


def summary_values(checks: Checks, summary: dict[str, Any]) -> str:
    """One line of every labelled summary value with its unit (n/a when null)."""
    parts = []
    for name, (label, unit) in summary_labels(checks).items():
        v = summary.get(name)
        text = "n/a" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))
        parts.append(f"{label} {text}" + (f" {unit}" if unit and unit != "1" and v is not None else ""))
    return "   ".join(parts)


def view_of(latest) -> SpectrumView | None:
    """The display view of an engine's ``latest_spectra()`` (None stays None)."""
    return spectrum_view(*latest) if latest is not None else None


def spectrum_view(axis: SpectralAxis, index: int, edit_set: int, n_average: int, latest: np.ndarray,
                  average: np.ndarray, noise_sd: float, ppm_range: tuple[float, float] = (0.2, 4.4),
                  max_points: int = 320) -> SpectrumView | None:
    """The latest metabolite transient and its set's running average for display (see SpectrumView): real
    parts over ``ppm_range``, block-averaged to at most ``max_points``, in units of the latest transient's
    noise SD. None when the range is outside the axis or the noise SD is not positive."""
    win = axis.clipped_window(*ppm_range)
    if win is None or not noise_sd > 0:
        return None
    i0, i1 = win
    block = max(1, -(-(i1 - i0) // max_points))  # ceil: block means, so no point is dropped
    i1 = i0 + (i1 - i0) // block * block

    def shown(x: np.ndarray) -> list[float]:
        return (x[i0:i1].real.reshape(-1, block).mean(axis=1) / noise_sd).tolist()

    half = (block - 1) / 2
    return SpectrumView(index=index, set=edit_set, n_average=n_average, ppm_lo=axis.ppm_of_index(i0 + half),
                        ppm_hi=axis.ppm_of_index(i1 - 1 - half), latest=shown(latest), average=shown(average))
