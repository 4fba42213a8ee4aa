"""``index.html`` of a study: one row per scan, linked to its report; sortable by any column (click its head),
filterable by verdict. One self-contained page: its few lines of script are inline, nothing is fetched."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from .html_report import COLOURS

SHOWN = ("scan", "sequence", "te_ms", "n_transients", "n_flagged", "n_excluded")
SCRIPT = """
function sortBy(n){const t=document.getElementById('scans'),rows=[...t.tBodies[0].rows];
const asc=t.dataset.col==n?t.dataset.asc!='1':true;t.dataset.col=n;t.dataset.asc=asc?'1':'0';
rows.sort((a,b)=>{const x=a.cells[n].dataset.v,y=b.cells[n].dataset.v,p=parseFloat(x),q=parseFloat(y);
const c=(!isNaN(p)&&!isNaN(q))?p-q:x.localeCompare(y);return asc?c:-c});rows.forEach(r=>t.tBodies[0].appendChild(r))}
function filt(){const v=document.getElementById('verdict').value;
for(const r of document.getElementById('scans').tBodies[0].rows){
r.style.display=(v==''||r.dataset.verdict==v)?'':'none'}}
"""
CSS = """body{font-family:system-ui,sans-serif;margin:20px;color:#222}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}th{background:#f4f4f4;cursor:pointer}
.v{color:#fff;font-weight:700;text-align:center}"""


def _cell(v: Any) -> str:
    if v is None or v == "":
        return "<td data-v=''></td>"
    text = f"{v:.3g}" if isinstance(v, float) else str(v)
    return f"<td data-v='{html.escape(str(v), quote=True)}'>{html.escape(text)}</td>"


def write_index(path: Path, rows: list[dict], columns: list[str]) -> None:
    """The study's index page (module docstring)."""
    values = [c for c in columns if c in SHOWN or c not in ("file", "water_file", "report", "notes", "status",
                                                                 "tr_ms", "n_metabolite", "n_water_ref")]
    values = [c for c in values if c not in ("verdict", "reasons", "error")]
    head = "".join(f"<th onclick='sortBy({i + 1})'>{html.escape(c)}</th>" for i, c in enumerate(values))
    n = len(values) + 1
    head = f"<th onclick='sortBy(0)'>verdict</th>{head}<th onclick='sortBy({n})'>reasons or error</th>"
    body = []
    for r in rows:
        v = str(r.get("verdict", ""))
        colour = COLOURS.get(v, "#555")
        name = html.escape(str(r.get("scan", "")))
        link = f"<a href='{html.escape(r['report'], quote=True)}'>{name}</a>" if r.get("report") else name
        cells = [f"<td class='v' data-v='{html.escape(v)}' style='background:{colour}'>{html.escape(v.upper())}</td>"]
        for c in values:
            cells.append(f"<td data-v='{name}'>{link}</td>" if c == "scan" else _cell(r.get(c)))
        cells.append(_cell(r.get("error") or r.get("reasons")))
        body.append(f"<tr data-verdict='{html.escape(v)}'>{''.join(cells)}</tr>")
    verdicts = sorted({str(r.get("verdict", "")) for r in rows})
    options = "".join(f"<option value='{html.escape(v)}'>{html.escape(v.upper())}</option>" for v in verdicts)
    counts = ", ".join(f"{sum(1 for r in rows if r.get('verdict') == v)} {v.upper()}" for v in verdicts)
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>mrsqc study</title>"
            f"<style>{CSS}</style><script>{SCRIPT}</script></head><body><h1>mrsqc study: {len(rows)} scans</h1>"
            f"<p>{html.escape(counts)}. Verdict: <select id='verdict' onchange='filt()'><option value=''>all</option>"
            f"{options}</select> · click a column to sort · study.tsv has every column (docs/results.md)</p>"
            f"<table id='scans'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></body></html>")
    path.write_text(page, encoding="utf-8")
