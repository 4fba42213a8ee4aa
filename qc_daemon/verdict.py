"""The verdict policy: from findings (the checks' and the engine's own) to the verdict and its reasons, and the
engine's findings about the scan as a whole (corrupted averages, an interrupted scan, no data). The engine's
summary and the journal-only recovery (journal.interrupted_summary) both decide here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .model import FAIL, METABOLITE, OK, RUNNING, SEVERITY_RANK, WARN, TransientQC, grade, interruption_text, worst
from .plugin_api import Finding


def flagged_finding(results: list[TransientQC], verdict_cfg: dict[str, Any]) -> Finding | None:
    """Rejected averages (metabolite transients) as a share of all: WARN above ``flagged_warn_fraction``, FAIL
    above ``flagged_fail_fraction``, else a passing line when any was rejected; None without any."""
    metab = [r for r in results if r.kind == METABOLITE]
    if not metab:
        return None
    n_flagged = sum(1 for r in results if not r.accepted)
    frac = sum(1 for r in metab if not r.accepted) / len(metab)
    text = f"{n_flagged} motion-corrupted average{'s' if n_flagged != 1 else ''} ({frac:.0%})"
    severity = grade(frac, verdict_cfg["flagged_warn_fraction"], verdict_cfg["flagged_fail_fraction"])
    return Finding(severity, text, "flagged_fraction", frac) if severity != OK or n_flagged else None


def status_findings(status: str, n_results: int, n_averages: int, planned: int) -> list[Finding]:
    """A scan that did not end normally (WARN, counting averages against the planned ones), or one with no
    transients at all (FAIL); nothing for a complete or a live (running) summary."""
    out = []
    if status not in ("complete", RUNNING):
        out.append(Finding(WARN, interruption_text(status, n_averages, planned), "status", status))
    if not n_results and status != RUNNING:
        out.append(Finding(FAIL, "no transients", "n_transients", 0))
    return out


def decide(findings: Iterable[Finding], reached: Iterable[str] = ()) -> tuple[str, list[str]]:
    """(verdict, reasons): the worst severity of the findings (and of verdicts already ``reached`` live), and
    the texts of the findings that are not OK, worst first."""
    findings = list(findings)
    verdict = worst([f.severity for f in findings] + list(reached))
    ranked = sorted((f for f in findings if f.severity != OK), key=lambda f: -SEVERITY_RANK[f.severity])
    return verdict, [f.text for f in ranked]


def as_records(findings: Iterable[Finding]) -> list[dict[str, Any]]:
    """Findings as summary.details["findings"] keeps them."""
    return [{"severity": f.severity, "text": f.text, "key": f.key, "value": f.value} for f in findings]


def from_records(records: Iterable[dict[str, Any]]) -> list[Finding]:
    return [Finding(r["severity"], r["text"], r.get("key", ""), r.get("value")) for r in records]
