"""The text pages: the title page (summary, threat model, verdict, missing notice) and reproducibility."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from matplotlib.figure import Figure

from feddp_eval.rundir.names import short
from feddp_eval.rundir.read import read_run
from reports.results import ResultsSet, point_label
from reports.style import TextFlow
from reports.summary import LEAK_MARGIN_DB, SettingSummary, defense_protects, defense_rank, fmt_noise

MAX_MISSING_ON_TITLE = 12


def compared(results: ResultsSet, summaries: Sequence[SettingSummary]) -> list[str]:
    """What the report compares, one line per dimension (shared by the PDF and summary.md)."""
    rows, grid = results.rows, results.meta.get("grid", {})
    finished = {p.get("key") for p in results.points} & {r.get("key") for r in rows}
    defenses = sorted({s.defense for s in summaries}, key=defense_rank)
    noises = _join(fmt_noise(n) for n in sorted({s.noise for s in summaries if s.defense != "none"}))
    targets = _join(sorted({r["target_site"] for r in rows if r.get("target_site") is not None}))
    if grid.get("targets"):
        targets += f" (requested: {_join(grid['targets'])}; -1 = smallest site)"
    run = read_run(rows[0].get("run_path"))
    sites = _join(s for s in run.sites() or list(run.summary.get("sites", {})) if s != "pooled")
    masks = sorted({str(r["mask"]) for r in rows if r.get("mask")})
    attack = _join(sorted({str(r.get("attack")) for r in rows})) + (f"; mask {_join(masks)}" if masks else "")
    lines = [
        f"Defenses: {_join(defenses)}",
        f"Noise multipliers σ: {noises} (plus the undefended run, σ = 0)",
        f"Attack: {attack}",
        f"Seeds: {_join(sorted({r['seed'] for r in rows if r.get('seed') is not None}))}",
        f"Targets (site attacked): {targets}",
        f"Sites: {sites}; rounds: {run.summary.get('rounds', '—')}",
        f"Results: {len(finished)} of {len(results.points)} expected points finished",
    ]
    scenario = results.meta.get("scenario")
    if scenario:
        lines.append(
            f"Scenario: site {scenario.get('site')} round {scenario.get('round')}, "
            f"{scenario.get('tiles')} tiles, {scenario.get('local_steps')} local steps of batch "
            f"{scenario.get('batch_size')}"
        )
    return lines


def _join(values: Iterable[Any]) -> str:
    """``"a, b, c"``, or ``"—"`` when there is nothing."""
    return ", ".join(str(v) for v in values) or "—"


def threat_model(defenses: Sequence[str], mask_known: bool) -> tuple[str, list[str]]:
    """The threat model paragraph and one line per defense on what it protects against."""
    text = (
        "The attacker is an honest-but-curious server. It sees each client's update exactly as the client "
        "released it (no secure aggregation) and knows the model architecture, the global weights it sent, "
        "the loss, and the client's local hyper-parameters (learning rate, local steps, batch size, number "
        "of tiles). "
        + (
            "It also knows the true masks: the most it could know. What the attack rebuilds is a lower "
            "bound on what such an attacker could rebuild, not an upper bound: a stronger attack may "
            "rebuild more."
            if mask_known
            else "It does not know the masks and reconstructs them jointly with the images."
        )
    )
    lines = [f"{d}: {defense_protects(d)}." for d in defenses]
    return text, lines


MALICIOUS_THREAT = (
    "Malicious server (reported in its own sections, never on the honest server's curves): it also "
    "modifies the model it sends one client in one round (an imprint block of brightness bins in front "
    "of the U-Net, Fowl et al. 2022). The client trains it with its own loss, optimizer and defense; "
    "the server reads tiles alone in a bin exactly off the released update, needs no mask, and is judged "
    "against the site's mean colour. This is the upper bound a client-side DP mechanism must hold against."
)


def verdict_rule() -> str:
    """How the verdict is decided, in words."""
    return (
        f"Rule: a setting leaks when the attack's mean PSNR exceeds that of the attacker's best guess "
        f"before reading the update by more than {LEAK_MARGIN_DB:g} dB. That guess is the true masks painted "
        "in the site's public colours when the attacker knows the masks, else the site's mean colour. "
        "Dice changes are relative to the undefended run: 100·(Dice − Dice_none)/Dice_none."
    )


def title_page(
    results: ResultsSet,
    summaries: Sequence[SettingSummary],
    sentences: Sequence[str],
    *,
    title: str,
    mask_note: str | None,
) -> list[Figure]:
    """The first page(s): what was compared, the threat model, the verdict, and what is missing."""
    flow = TextFlow("Summary")
    flow.paragraph(title, size=12, weight="bold")
    flow.paragraph(f"Source: {results.source}", size=8.5, color="#333333")
    flow.heading("What was compared")
    flow.bullets(compared(results, summaries))
    defenses = sorted({s.defense for s in summaries}, key=defense_rank)
    honest_rows = [r for r in results.rows if r.get("threat") != "malicious"]
    text, lines = threat_model(defenses, _mask_known(honest_rows))
    flow.heading("Threat model")
    if honest_rows:
        flow.paragraph(text)
    if len(honest_rows) < len(results.rows):
        flow.paragraph(MALICIOUS_THREAT)
    flow.bullets(lines)
    flow.heading("Verdict")
    flow.paragraph(verdict_rule())
    flow.bullets(list(sentences))
    if mask_note:
        flow.paragraph(mask_note)
    if results.missing:
        flow.heading("Missing results", size=12)
        shown = results.missing[:MAX_MISSING_ON_TITLE]
        more = len(results.missing) - len(shown)
        flow.paragraph(
            f"{len(results.missing)} expected result(s) or file(s) are missing; the report shows what "
            "exists.",
            color="#D55E00",
        )
        flow.bullets(shown + ([f"… and {more} more (see summary.md)"] if more else []), size=8.5)
    return flow.pages


def _mask_known(rows: Sequence[dict[str, Any]]) -> bool:
    return any(r.get("mask") == "known" for r in rows) or any(
        r.get("mask_prior_psnr") is not None for r in rows
    )


def reproducibility_lines(results: ResultsSet) -> dict[str, list[str]]:
    """Software, seeds, commands, points and the rebuild command, by heading."""
    manifests = [read_run(r.get("run_path")).manifest for r in results.rows]
    manifest = next((m for m in manifests if m), {})
    software = [
        f"feddp-eval {manifest.get('feddp_eval') or results.meta.get('feddp_eval', '?')}",
        f"python {manifest.get('python', '?')}",
        f"platform {manifest.get('platform', '?')}",
        f"device {manifest.get('device', '?')}",
        f"git revision {manifest.get('git_revision') or 'none recorded'}",
        "packages: "
        + (
            ", ".join(f"{k} {v}" for k, v in sorted((manifest.get("packages") or {}).items()))
            or "none recorded"
        ),
    ]
    if results.meta.get("created"):
        software.append(f"sweep created {results.meta['created']}")
    commands = []
    if results.meta.get("command"):
        commands.append("sweep: " + shlex.join(str(c) for c in results.meta["command"]))
    run_commands: dict[str, int] = {}
    for m in manifests:
        if m.get("command"):
            line = shlex.join(str(c) for c in m["command"])
            run_commands[line] = run_commands.get(line, 0) + 1
    commands += [f"runs ({n}×): {line}" for line, n in run_commands.items()]
    seeds = sorted({r["seed"] for r in results.rows if r.get("seed") is not None})
    finished = {r.get("key") for r in results.rows}
    hashes = {r.get("key"): r.get("config_hash") for r in results.rows}
    points = [
        f"{p.get('key')}  {short(str(p.get('config_hash') or hashes.get(p.get('key')) or '?'))}  "
        f"{'done   ' if p.get('key') in finished else 'MISSING'}  {point_label(p)}"
        for p in results.points
    ]
    return {
        "Software": software,
        "Seeds": [", ".join(str(s) for s in seeds) or "not recorded"],
        "Commands": commands or ["not recorded"],
        "Rebuild this report": [f"feddp-eval report {shlex.quote(str(results.source))} -o report.pdf"],
        "Points (key, config hash, status, setting)": points,
    }


def reproducibility_pages(results: ResultsSet) -> list[Figure]:
    """The reproducibility section: versions, seeds, commands, every point's key and config hash."""
    flow = TextFlow("Reproducibility")
    flow.paragraph(
        "Everything needed to rerun these results. Full 64-hex config hashes are in results.csv and "
        "summary.md; a finished point is never recomputed by a resumed sweep."
    )
    for heading, lines in reproducibility_lines(results).items():
        flow.heading(heading, size=11)
        if heading in ("Software", "Seeds"):
            flow.bullets(lines, size=8.5)
        else:
            flow.mono(lines, size=8)
    if results.missing:
        flow.heading("Missing results", size=11)
        flow.bullets(results.missing, size=8)
    return flow.pages
