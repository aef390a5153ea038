"""The table ``feddp-eval attack`` prints: one column per arm and per prior guess, one row per quantity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from feddp_eval import schema
from feddp_eval.cli.render import MISSING, print_not_run
from feddp_eval.result_row import ResultRow

if TYPE_CHECKING:
    from feddp_eval.workflows.attack import AttackResult

UTILITY = ("dice", "jaccard", "accuracy")
LEAKAGE = ("psnr", "ssim", "lpips", "mask_dice")


def rounds_text(scenario: dict[str, Any]) -> str:
    """``round 1``, or ``rounds 1–10 (10 inverted jointly)`` for a multi-round attack."""
    rounds = scenario.get("rounds") or [scenario["round"]]
    if len(rounds) == 1:
        return f"round {rounds[0]}"
    return f"rounds {rounds[0]}–{rounds[-1]} ({len(rounds)} inverted jointly)"


def print_attack_table(result: AttackResult) -> None:
    """The comparison table and the lines that explain it; fits an 80-column terminal."""
    from rich.console import Console

    console = Console()
    console.print(_table(result))
    print_not_run(console, result.row_dicts())
    for row in result.rows:
        privacy = schema.privacy_text(row.epsilon, row.delta, row.granularity, row.accountant)
        console.print(f"{_label(row)}: {privacy}")
    for line in [
        *_own_priors(result.rows, result.scenario),
        *own_guess_lines(result.rows),
        *_notes(result.rows[0], result.scenario, result.grid),
    ]:
        console.print(line)


def _label(row: ResultRow) -> str:
    """``none`` or ``dp-sgd σ=1.1``: the arm's setting."""
    return schema.setting_label(str(row.defense), row.noise)


def _table(result: AttackResult) -> Any:
    from rich.table import Table

    s, rows, first = result.scenario, result.rows, result.rows[0]
    counts = arm_tiles(s, len(rows))
    table = Table(
        title=f"{s['site']}, {rounds_text(s)}: {tiles_text(rows, counts)}, {s['local_steps']} local step(s)"
    )
    table.add_column("")
    for row in rows:
        table.add_column(_label(row).replace(" ", "\n"), justify="right")
    priors = [("prior\nmean colour", "prior")]
    if first.mask_prior_psnr is not None:
        priors.append(("prior\npainted mask", "mask_prior"))
    for title, _ in priors:
        table.add_column(title, justify="right", style="dim")
    blank = ["" for _ in priors]
    table.add_row("ε (δ)", *[_epsilon_cell(r) for r in rows], *blank)
    for name in UTILITY:
        c = schema.column(name)
        table.add_row(c.label, *[c.format(r.value(name)) for r in rows], *blank)
    if (seeds := first.utility_seeds) is not None:
        mean = schema.column("dice_mean")
        table.add_row(f"Dice, {seeds} seeds", *[mean.format(r.dice_mean) for r in rows], *blank)
        table.add_row("ΔDice (95%)", *[delta_dice_text(r) for r in rows], *blank)
    for name in LEAKAGE:
        c = schema.column(name)
        # A prior column the schema lacks (the painted-mask prior scores no mask) is a blank cell.
        guesses = [c.format(getattr(first, f"{p}_{name}", None)) for _, p in priors]
        table.add_row(c.label + c.arrow, *[c.format(r.value(name)) for r in rows], *guesses)
    margin = schema.column("margin_psnr")
    table.add_row(margin.label, *[margin.format(r.margin_psnr) for r in rows], *blank)
    table.add_row(
        "tiles > prior",
        *[_count(r.tiles_beating_prior, n) for r, n in zip(rows, counts, strict=True)],
        *blank,
    )
    median = schema.column("psnr_median")
    table.add_row(median.label, *[median.format(r.psnr_median) for r in rows], *blank)
    for name in ("share_30db", "share_40db"):
        label = "tiles " + schema.column(name).label
        table.add_row(label, *[_share(r.value(name), n) for r, n in zip(rows, counts, strict=True)], *blank)
    if first.threat != "malicious":  # an analytic attack has no iterations to count
        table.add_row("iterations", *[_iterations(r) for r in rows], *blank)
    if first.threat == "malicious":
        read = [f"{r.tiles_read} ({r.tiles_alone} alone)" for r in rows]
        table.add_row("tiles read", *read, *blank)
    return table


def arm_tiles(scenario: dict[str, Any], arms: int) -> list[int]:
    """Each arm's attacked tile count (``tiles_by_arm``; results written before it was recorded hold
    one count for all arms)."""
    return list(scenario.get("tiles_by_arm") or [scenario["tiles"]] * arms)


def tiles_text(rows: list[ResultRow], counts: list[int]) -> str:
    """``4 tiles``; ``1 tile (dp-sgd σ=1.1: 2, Poisson-sampled)`` where an arm drew another batch."""
    first = f"{counts[0]} tile{'s' if counts[0] != 1 else ''}"
    others = [f"{_label(r)}: {n}" for r, n in zip(rows[1:], counts[1:], strict=True) if n != counts[0]]
    return f"{first} ({', '.join(others)}, Poisson-sampled)" if others else first


def delta_dice_text(row: ResultRow) -> str:
    """``-5.6% [-8.1, -3.0] lower``; ``+0.4% cannot tell`` with one seed; blank on the reference arm."""
    mean, low, high = row.delta_dice, row.delta_dice_low, row.delta_dice_high
    if mean is None:
        return ""
    if low is None or high is None:
        return f"{mean:+.1%}\n{row.delta_dice_verdict}"
    return f"{mean:+.1%}\n[{low * 100:+.1f}, {high * 100:+.1f}]\n{row.delta_dice_verdict}"


def _epsilon_cell(row: ResultRow) -> str:
    if row.epsilon is None:
        return schema.format_epsilon(None)
    return f"{schema.format_epsilon(row.epsilon)} ({row.delta:g})"


def _iterations(row: ResultRow) -> str:
    """``312 (plateau)``: the iterations the inversion used, and why it stopped when not at its budget."""
    used, stopped = row.iterations, row.stopped
    if used is None:
        return MISSING
    if stopped == "fitted":  # a learned map: no iterations, see the attack's own-guess line
        return "fitted"
    return f"{used}" if stopped in (None, "budget") else f"{used}\n({stopped})"


def _count(value: int | None, total: int) -> str:
    return MISSING if value is None else f"{value}/{total}"


def _share(value: float | None, total: int) -> str:
    return MISSING if value is None else _count(round(value * total), total)


def _own_priors(rows: list[ResultRow], scenario: dict[str, Any]) -> list[str]:
    """Where an arm attacked other tiles (Poisson sampling), the prior columns, which score the first
    arm's tiles, are not its guess: one line per such arm with its own prior's PSNR / SSIM, the one
    its 'vs prior' is read against."""
    counts = arm_tiles(scenario, len(rows))
    lines = []
    for row, n in zip(rows[1:], counts[1:], strict=True):
        if n == counts[0] and row.prior_psnr == rows[0].prior_psnr:
            continue  # the same tiles (the prior of other tiles would score otherwise)
        painted = row.mask_prior_psnr is not None
        psnr, ssim = (
            (row.mask_prior_psnr, row.mask_prior_ssim) if painted else (row.prior_psnr, row.prior_ssim)
        )
        if psnr is not None and ssim is not None:
            kind = "painted-mask" if painted else "mean-colour"
            lines.append(
                f"{_label(row)} attacked other tiles: the prior columns score {_label(rows[0])}'s; "
                f"its own {kind} prior scores {psnr:.1f} dB / SSIM {ssim:.3f} "
                "(--paired-batches trains the reference on the same draws)"
            )
    return lines


def own_guess_lines(rows: list[ResultRow]) -> list[str]:
    """For an attack that holds a guess of its own without the update (a learned attack's, from the
    same public tiles), one line per arm: that guess's PSNR / SSIM and the reconstruction over it,
    the margin that credits the update alone."""
    lines = []
    for row in rows:
        psnr, ssim = row.own_guess_psnr, row.own_guess_ssim
        if psnr is None or ssim is None or row.psnr is None or row.ssim is None:
            continue
        read = (
            "the prior its 'vs prior' is read against"
            if row.prior_kind == "own-guess"
            else f"below the {_view_prior(row)}, which its 'vs prior' is read against"
        )
        lines.append(
            f"{_label(row)}: {row.attack}'s own guess without the update (fitted on the same public "
            f"tiles) scores {psnr:.1f} dB / SSIM {ssim:.3f}, {read}; the reconstruction over it: "
            f"{row.psnr - psnr:+.1f} dB, SSIM {row.ssim - ssim:+.3f}"
        )
    return lines


def _view_prior(row: ResultRow) -> str:
    """The prior the view holds besides an attack's own guess: painted masks where they were known."""
    return "painted-mask prior" if row.mask_prior_psnr is not None else "mean-colour prior"


def _notes(first: ResultRow, scenario: dict[str, Any], grid: Any) -> list[str]:
    """What the table's rows mean, the threat model, and where the reconstructions are."""
    if first.own_guess_psnr is not None:  # a learned attack holds both guesses: the stronger is the bar
        reference = f"attack's own guess's or the {_view_prior(first)}'s, the stronger"
    elif first.prior_kind == "painted-mask":
        reference = "painted-mask prior's"
    else:
        reference = "mean-colour prior's"
    lines = [
        "ΔDice: the defended arm's Dice over the undefended one's − 1, mean over the paired seeds, with "
        "its 95% t interval; 'within noise' when the interval holds 0 (only the first seed is attacked).",
        "↑/↓: more leakage. Priors use no update: the site's public mean colour; with the masks "
        "known, the masks painted in the site's public nuclei and background colours.",
        "PSNR: of the MSE pooled over the tiles, so exact tiles cannot speak for the others; median "
        "dB and tiles ≥ 30/40 dB show how the tiles spread.",
        f"vs prior: PSNR minus the {reference} (the attacker's best guess without the update); tiles "
        "> prior: tiles whose PSNR beats that guess of the same tile",
    ]
    if scenario.get("paired_batches"):
        lines.append(
            "paired batches: the undefended arm Poisson-sampled from the defended arm's draws, so both "
            "trained every client on the same tiles (ΔDice: clipping and noise, not the sampling)"
        )
    if first.threat == "malicious":
        lines.append(
            "tiles read: tiles the imprint found in a bin of their own (in brackets: how many truly "
            "were alone); the rest are filled with the mean colour. Imprint recovers no mask."
        )
    elif first.mask_dice is None:
        lines.append(f"mask Dice: {MISSING}, the attacker was given the true masks")
    elif first.flat_mask_dice is not None:
        lines.append(
            f"mask Dice: marking every pixel nucleus scores {first.flat_mask_dice:.3f} on these tiles, the "
            "highest Dice a mask guessed without the update can expect; a rebuilt mask leaks only above "
            "it (the prior's mask is the per-pixel majority, which maximises accuracy, not Dice)"
        )
    if first.threat != "malicious":
        from rich.markup import escape

        from reports.attack_strength import strength_sentence

        lines.append(
            "An attack's result is a lower bound on what its attacker could rebuild, never an upper "
            "bound: 'vs prior' at or below 0 means this attack rebuilt no more than the guess."
        )
        strength = strength_sentence(str(first.attack))
        if strength:
            lines.append(escape(strength))  # it quotes TOML sections, which rich would read as markup
    lines.append(f"threat: {scenario['threat']}")
    if first.lpips_missing:
        lines.append(f"[yellow]LPIPS missing: {first.lpips_missing}[/yellow]")
    lines.append(f"reconstructions: {grid}")
    return lines
