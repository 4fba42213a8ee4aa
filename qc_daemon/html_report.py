"""``report.html``: one self-contained page per scan, rendered from report.json (report_data.py).

Plots are static SVG drawn by matplotlib (already installed with twixtools; its Figure API, no pyplot, no GUI)
and inlined: the page needs no network and no script to show, prints as it looks, and stays small (tens of
kB per plot), where an interactive library would embed megabytes of JavaScript. What is drawn comes from the
checks' declarations (plugin_api: the trace plot, the growth plot, the columns, the summary labels and lines),
so a third-party check's values appear like the built-in ones. No patient field exists in the data, none is
shown. Spectra are drawn with the ppm axis reversed, as the field draws them.
"""

from __future__ import annotations

import html
import io
import re
from typing import Any

from . import display
from .model import FAIL, OK, WARN, WATER_REF, verdict_word

COLOURS = {OK: "#1b7f3b", WARN: "#b7791f", FAIL: "#c53030"}
FLAGGED, LINE, BAND, ALT = "#c53030", "#1f4e79", "#f2d8a7", "#7f8c8d"

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#555;font-size:13px} .badge{display:inline-block;padding:10px 26px;border-radius:8px;color:#fff;
font-size:34px;font-weight:700;letter-spacing:2px;margin:14px 0 6px} .reasons{font-size:17px;margin:4px 0 10px}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f4f4f4} .grid{display:flex;flex-wrap:wrap;gap:8px} .grid>div{flex:1 1 520px}
.note{color:#555;font-size:13px} svg{max-width:100%;height:auto}
"""


def _svg(fig) -> str:
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    matplotlib.rcParams["svg.fonttype"] = "none"  # text as text: smaller, selectable
    matplotlib.rcParams["svg.hashsalt"] = "mrsqc"  # element ids from the content, not a random salt: the same
    # data render the same page (mrsqc report re-renders it byte for byte)

    buf = io.StringIO()
    FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # no XML prolog or DOCTYPE (with its DTD address) inside the page
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def _figure(width: float = 5.6, height: float = 2.6):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def warm_up() -> None:
    """Import matplotlib and draw one small figure: the daemon does it at start, so the first scan's report
    costs what every later one does (and the process's memory does not step up mid-service)."""
    fig, ax = _figure(1, 1)
    ax.plot([0, 1], [0, 1])
    _svg(fig)


def _minutes(rows: list[dict]) -> list[float]:
    return [(r.get("time_s") or 0.0) / 60.0 for r in rows]


def trace_plot(data: dict[str, Any]) -> str | None:
    """The declared trace (frequency): points per metabolite transient, flagged marked, its line, the band."""
    tr = display.trace(data["checks"])
    rows = [r for r in data["results"] if r["kind"] != WATER_REF and display.value_of(r, tr["points"]) is not None] \
        if tr else []
    if not rows:
        return None
    fig, ax = _figure()
    band = (data.get("limits") or {}).get(tr["band"])
    if band:
        ax.axhspan(-band, band, color=BAND, alpha=0.5, lw=0, label=f"warning band +-{band:.1f}")
    t = _minutes(rows)
    ok = [i for i, r in enumerate(rows) if not r["flags"]]
    bad = [i for i, r in enumerate(rows) if r["flags"]]
    ax.plot([t[i] for i in ok], [display.value_of(rows[i], tr["points"]) for i in ok], "o", ms=3, color=LINE,
            label="per transient")
    if bad:
        ax.plot([t[i] for i in bad], [display.value_of(rows[i], tr["points"]) for i in bad], "x", ms=7, mew=2,
                color=FLAGGED, label="flagged")
    line = [(t[i], display.value_of(r, tr["line"])) for i, r in enumerate(rows)
            if display.value_of(r, tr["line"]) is not None]
    if line:
        ax.plot(*zip(*line), "-", color="#222", lw=1.4, label="trend")
    ax.set_xlabel("time, min")
    ax.set_ylabel(tr["titles"][-1].replace("{band}", ""))
    ax.set_title(tr["titles"][0].replace("{band}", ""), fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return _svg(fig)


def growth_plot(data: dict[str, Any]) -> str | None:
    """The declared growth plot (running SNR against accepted averages) and its projection to the planned end."""
    g = display.growth(data["checks"])
    rows = [r for r in data["results"] if r["kind"] != WATER_REF and r.get("set", 0) == 0
            and display.value_of(r, g["value"]) is not None and display.value_of(r, g["count"]) is not None] \
        if g else []
    if not rows:
        return None
    fig, ax = _figure()
    n = [display.value_of(r, g["count"]) for r in rows]
    ax.plot(n, [display.value_of(r, g["value"]) for r in rows], "-", color=LINE, lw=1.6, label="running")
    summary = data["summary"]
    projected = summary.get(g["projected"])
    planned = max(1, int((data["scan"].get("planned_averages") or 1) // max(1, data["scan"].get("n_sets") or 1)))
    if projected is not None and n:
        ax.plot([n[-1], planned], [display.value_of(rows[-1], g["value"]), projected], "--", color=ALT,
                label=f"projected {projected:.1f} at {planned}")
    ax.set_xlabel("accepted averages")
    ax.set_title(g["titles"][0], fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return _svg(fig)


def column_plots(data: dict[str, Any]) -> list[str]:
    """One small trace per declared column (value per transient; flagged marked)."""
    out = []
    for col in display.columns(data["checks"]):
        rows = [r for r in data["results"] if r["kind"] in col["kinds"] and
                isinstance(display.value_of(r, col["metric"]), (int, float))]
        if len(rows) < 2:
            continue
        fig, ax = _figure(3.6, 2.0)
        t = _minutes(rows)
        ax.plot(t, [display.value_of(r, col["metric"]) for r in rows], ".-", ms=3, lw=0.6, color=LINE)
        bad = [i for i, r in enumerate(rows) if r["flags"]]
        if bad:
            ax.plot([t[i] for i in bad], [display.value_of(rows[i], col["metric"]) for i in bad], "x",
                    color=FLAGGED, ms=6, mew=2)
        ax.set_title(display.column_header(col), fontsize=9)
        ax.set_xlabel("time, min", fontsize=8)
        ax.tick_params(labelsize=7)
        out.append(_svg(fig))
    return out


def spectrum_plots(data: dict[str, Any]) -> list[str]:
    """Per edit set, the average before and after alignment and exclusion, side by side, one y-scale."""
    import numpy as np
    from matplotlib.figure import Figure

    out = []
    for sp in data.get("spectra") or []:
        ppm = np.linspace(sp["ppm_lo"], sp["ppm_hi"], len(sp["before"]))
        fig = Figure(figsize=(11, 3.0), dpi=100, layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        pairs = [(axes[0], sp["before"], f"before: all {sp['n_before']} as acquired"),
                 (axes[1], sp["after"], f"after: {sp['n_after']} accepted, frequency- and phase-aligned")]
        for ax, y, title in pairs:
            if y is not None:
                ax.plot(ppm, y, color=LINE, lw=0.9)
            ax.set_xlim(sp["ppm_hi"], sp["ppm_lo"])  # ppm reversed
            ax.set_xlabel("ppm")
            ax.set_title(title + (f" (edit set {sp['set']})" if len(data["spectra"]) > 1 else ""), fontsize=10)
        axes[0].set_ylabel("real part, x noise SD of one transient")
        out.append(_svg(fig))
    return out


def _esc(v: Any) -> str:
    return html.escape(str(v))


def mrsinmrs_rows(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The numbers a paper reports (MRSinMRS, Lin et al. 2021): SNR and linewidth with their peak and
    definition, averages acquired / excluded and the criteria, drift, and what produced them."""
    s, checks, scan = data["summary"], data["checks"], data["scan"]
    rows = [(label, "n/a" if s.get(name) is None else f"{s[name]:.3g}{'' if unit in ('', '1') else ' ' + unit}")
            for name, (label, unit) in display.summary_labels(checks).items()]
    rows += [("definition", line) for line in display.summary_text_lines(checks, s)]
    flags = sorted({f for r in data["results"] if not r["accepted"] for f in r["flags"]})
    rows += [("averages acquired", f"{s['n_metabolite']} metabolite (+ {s['n_water_ref']} water reference) of "
                                   f"{scan.get('planned_averages', '?')} planned"),
             ("averages excluded", f"{sum(1 for r in data['results'] if not r['accepted'] and r['kind'] != WATER_REF)}"
                                   f" (indices {s['flagged_indices'] or 'none'})"),
             ("exclusion criteria", ", ".join(flags) + " (docs/results.md defines each flag)" if flags
              else "none applied: no transient excluded")]
    prov = s.get("provenance") or {}
    rows.append(("software", f"{prov.get('program', 'mrsqc')} {prov.get('version', '')}, config digest "
                             f"{prov.get('config_digest', '?')}"))
    return rows


def flagged_table(data: dict[str, Any]) -> str:
    cols = display.table_columns(data["checks"]) or display.columns(data["checks"])
    rows = [r for r in data["results"] if r["flags"]]
    if not rows:
        return "<p>No transient flagged.</p>"
    head = "".join(f"<th>{_esc(display.column_header(c))}</th>" for c in cols)
    body = []
    for r in rows:
        cells = "".join(f"<td>{_esc(display.column_cell(r, c).strip())}</td>" for c in cols)
        body.append(f"<tr><td>{r['index']}</td><td>{r['time_s']:.1f}</td><td>{_esc(r['kind'])}</td>"
                    f"<td>{'yes' if r['accepted'] else 'no'}</td><td>{_esc(', '.join(r['flags']))}</td>{cells}</tr>")
    return (f"<table><tr><th>transient</th><th>time, s</th><th>kind</th><th>accepted</th><th>reasons</th>{head}</tr>"
            + "".join(body) + "</table>")


def render(data: dict[str, Any]) -> str:
    """The whole page."""
    s, scan = data["summary"], data["scan"]
    verdict = s.get("verdict", OK)
    reasons = s.get("reasons") or ["all checks within limits"]
    te = f"TE {scan['te_ms']:g} ms" if scan.get("te_ms") else "TE ?"
    tr = f"TR {scan['tr_ms']:g} ms" if scan.get("tr_ms") else "TR ?"
    meta = (f"scan {_esc(scan.get('scan_id'))} · {_esc(scan.get('sequence') or '?')} · {te} · {tr} · "
            f"f0 {scan.get('f0_hz', 0) / 1e6:.3f} MHz · {scan.get('n_coils', '?')} coils x {scan.get('n_points', '?')}"
            f" points · {_esc(scan.get('source', ''))} · status {_esc(s.get('status', ''))}")
    title = f"mrsqc report {_esc(scan.get('scan_id'))}"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>mrsqc report</h1><div class='meta'>{meta}</div>",
             f"<div class='badge' id='verdict' style='background:{COLOURS.get(verdict, '#555')}'>"
             f"{verdict_word(verdict)}</div>",
             f"<div class='reasons'>{'; '.join(_esc(x) for x in reasons)}</div>",
             f"<div class='meta'>{s['n_transients']} transients ({s['n_metabolite']} metabolite, {s['n_water_ref']} "
             f"water reference), {s['n_flagged']} flagged · {_esc(display.summary_values(data['checks'], s))}</div>"]
    trace, growth = trace_plot(data), growth_plot(data)
    parts.append("<h2>Frequency and SNR</h2><div class='grid'>")
    parts += [f"<div>{x}</div>" for x in (trace, growth) if x]
    parts.append("</div>")
    specs = spectrum_plots(data)
    parts.append("<h2>Spectrum of the average: before and after alignment and exclusion</h2>")
    parts += specs or [f"<p class='note'>Not available: {_esc(data.get('spectra_missing') or 'no spectra')}.</p>"]
    parts.append("<h2>Per transient</h2><div class='grid'>")
    parts += [f"<div>{x}</div>" for x in column_plots(data)]
    parts.append("</div><h2>Flagged transients</h2>" + flagged_table(data))
    parts.append("<h2>For the methods section (MRSinMRS)</h2><table>" + "".join(
        f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in mrsinmrs_rows(data)) + "</table>")
    notes = list(s.get("notes") or []) + [f"{k}: {v}" for k, v in (s.get("unmeasured") or {}).items()]
    if notes:
        parts.append("<h2>Notes</h2><ul class='note'>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>")
    parts.append("<p class='note'>Frequencies: measured shift vs the scan reference, + = towards higher ppm. "
                 "Definitions of every value: docs/results.md. No patient information is stored or shown.</p>")
    parts.append("</body></html>")
    return "".join(parts)
