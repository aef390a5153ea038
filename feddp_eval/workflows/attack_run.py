"""One attack on one training run: the target update, the attacker's prior, the reconstruction, its scores.

The attack sees only the server's view (captures, global weights, public site statistics and,
when the threat model grants them, the masks); the truth is read here for scoring alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from feddp_eval.config import ExperimentConfig
from feddp_eval.errors import ConfigError, NonFiniteError, RunDirError
from feddp_eval.io import save_tensors, write_csv, write_json
from feddp_eval.result_row import ResultRow
from feddp_eval.workflows import rows as columns
from feddp_eval.workflows.train import TrainResult, resolve_device

CONVERGENCE_COLUMNS = ("iteration", "objective", "psnr", "ssim")


@dataclass(frozen=True)
class Target:
    """The attacked client round(s), the truth kept for scoring, and the attacker's guesses without
    the update.

    Attributes:
        site: Index of the attacked site; ``public`` its published statistics; ``info`` where its
            tiles come from (source; on synthetic data the stain and seed).
        captures: Its captured update(s), in round order.
        truth: Its true tiles and masks (scoring only).
        mask: ``known`` or ``unknown``: whether the attacker holds the true masks.
        malicious: Whether the attack is a malicious server's (it modified the model it sent).
        mean_tile: The site's public mean colour as a tile; ``painted``: the true masks painted in the
            site's public nuclei and background colours; ``prior``: the stronger guess in force.
    """

    site: int
    public: dict[str, Any]
    info: dict[str, Any]
    name: str
    captures: list[Any]
    truth: Any
    mask: Literal["known", "unknown"]
    malicious: bool
    mean_tile: Any
    painted: Any

    @property
    def prior(self) -> Any:
        return self.painted if self.mask == "known" else self.mean_tile

    @property
    def foreground(self) -> float:
        return float(self.public["foreground_fraction"])

    def prior_tiles(self) -> Any:
        """The prior guess, one tile per true tile."""
        n, _, h, w = self.truth.images.shape
        return self.prior.expand(n, 3, h, w)


@dataclass(frozen=True)
class AttackOutcome:
    """What :func:`attack_run` produced: the results row, the reconstruction, the truth it was scored
    against, the scenario in words, and the attacker's guess without the update."""

    row: ResultRow
    reconstruction: Any
    truth: Any
    scenario: dict[str, Any]
    guess: Any


def attack_run(
    config: ExperimentConfig, trained: TrainResult, lpips: Any, *, on_iteration: Any = None
) -> AttackOutcome:
    """Attack one training run's target capture and score it against ground truth and the prior."""
    from attacks import ATTACKS
    from feddp_eval.metrics.privacy import all_nucleus_dice
    from feddp_eval.schema import mark_not_run

    a = config.attack
    target = find_target(config, trained.run_dir)
    attack = ATTACKS.create(a.name, **attack_settings(a))
    recon, failure, convergence = _reconstruct(config, target, attack, on_iteration)
    failure = failure or failed_reconstruction(recon.stopped, recon.objective, recon.restart_objectives)
    scores, baseline, mask_baseline, own_guess = _score(target, recon, lpips)
    mask_scored = target.mask == "unknown" and not target.malicious
    attack_dir = _attack_dir(trained.run_dir, config, target)
    tiles = _write_files(attack_dir, target, recon, convergence)
    cells = {
        **columns.training_columns(config, trained.summary),
        **columns.scores_columns(
            scores, baseline, mask_baseline, mask_scored=mask_scored, own_guess=own_guess
        ),
        "flat_mask_dice": all_nucleus_dice(target.truth.masks) if mask_scored else None,
        **(columns.imprint_facts(target.captures[0], target.truth, recon) if target.malicious else {}),
        **columns.attack_columns(
            config, recon, malicious=target.malicious, restarts=a.schedule[1], rounds=len(target.captures)
        ),
        "lpips_missing": None if lpips.available else lpips.missing_reason,
        "run_dir": str(trained.run_dir),
        "tiles": str(tiles),
    }
    if failure is not None:
        cells = mark_not_run(cells, failure)  # no metric of the prior's is passed off as the attack's
    row = ResultRow.of(cells)
    write_json(
        attack_dir / "scores.json",
        {
            "row": row.as_dict(),
            "scores": scores.to_dict(),
            "prior": baseline.to_dict(),
            "mask_prior": mask_baseline.to_dict() if mask_baseline else None,
            "own_guess": own_guess.to_dict() if own_guess else None,
        },
    )
    return AttackOutcome(row, recon, target.truth, _scenario(config, target, attack), _guess(target))


def find_target(config: ExperimentConfig, run_dir: Path) -> Target:
    """The attacked site's captures, their truth, and the attacker's guesses without the update."""
    import torch

    from attacks import ATTACKS, Attack
    from feddp_eval.federated.capture import load_ground_truth
    from feddp_eval.metrics.privacy import mask_painted_prior
    from feddp_eval.rundir.check import read_sites

    a = config.attack
    sites = read_sites(run_dir)
    site = target_site(config, sites)
    captures = _target_captures(run_dir, site, a)
    # Scoring only; the attack sees the masks if known. Several rounds: the union of their tiles.
    truth = load_ground_truth(run_dir, captures, tile_size=config.data.tile_size)
    if len(truth) == 0:
        rounds = ", ".join(str(c.round) for c in captures)
        raise ConfigError(
            f"site {sites[site]['name']!r} trained on no tile in round {rounds}: Poisson sampling "
            f"({config.defense.name}) drew an empty batch, so its update is the defense's noise "
            "alone and there is nothing to rebuild; attack another round (--target-round) or "
            "site (--target-site)"
        )
    public = sites[site]["public"]
    size = config.data.tile_size
    # The attacker's best guess before reading the update: with the masks in hand, the masks painted
    # in the site's public nuclei and background colours; without them, the site's mean colour.
    # A malicious server's imprint needs no mask: it is judged against the mean colour.
    malicious = ATTACKS.get(a.name).threat != Attack.threat
    return Target(
        site=site,
        public=public,
        info=dict(sites[site].get("info") or {}),
        name=sites[site]["name"],
        captures=captures,
        truth=truth,
        mask="unknown" if malicious else a.mask,
        malicious=malicious,
        mean_tile=torch.tensor(public["mean_rgb"])[:, None, None].expand(3, size, size),
        painted=mask_painted_prior(
            truth.masks, torch.tensor(public["foreground_rgb"]), torch.tensor(public["background_rgb"])
        ),
    )


def target_site(config: ExperimentConfig, sites: list[dict[str, Any]]) -> int:
    """The attacked site's index, with -1 resolved to the site with the fewest training tiles."""
    wanted = config.attack.target_site
    site = wanted if wanted >= 0 else min(sites, key=lambda s: s["train_tiles"])["index"]
    if site >= len(sites):
        raise ConfigError(
            f"`attack.target_site` is {site} but the run has {len(sites)} sites (0..{len(sites) - 1})"
        )
    return int(site)


def utility_row(config: ExperimentConfig, trained: TrainResult) -> ResultRow:
    """A sweep row of a seed that is trained for utility and not attacked (``sweep.attack_seeds``):
    the training run's columns, every attack cell empty, ``stopped = "utility only"``."""
    from feddp_eval import schema
    from feddp_eval.rundir.check import read_sites
    from feddp_eval.sweep import UTILITY_ONLY

    return ResultRow.of(dict.fromkeys(schema.result_columns())).with_cells(
        **columns.training_columns(config, trained.summary),
        threat="honest",
        attack=config.attack.name,
        stopped=UTILITY_ONLY,
        run_dir=str(trained.run_dir),
        target_site=target_site(config, read_sites(trained.run_dir)),
    )


def _reconstruct(
    config: ExperimentConfig, target: Target, attack: Any, on_iteration: Any
) -> tuple[Any, str | None, list[dict[str, Any]]]:
    """The reconstruction (or, when the view cannot be attacked, the prior marked "not run"), why it
    is no result (or ``None``), and the convergence record."""
    from attacks import AttackerKnowledge
    from attacks.view import server_view
    from feddp_eval.metrics.privacy import score_reconstruction

    a, truth = config.attack, target.truth
    view = server_view(
        target.captures if a.multi_round else target.captures[0],
        config.model,
        AttackerKnowledge(mask=target.mask),
        tile_size=config.data.tile_size,
        masks=truth.masks if target.mask == "known" else None,
        prior=target.prior,
        foreground_prior=target.foreground,
        public_tiles=public_tiles(config, target, attack),
        release=simulated_release(target.captures[0].metadata),
    )
    convergence: list[dict[str, Any]] = []

    def record(iteration: int, images: Any, objective: float) -> None:
        # The scorer, not the attack, reads the truth: PSNR/SSIM of the best iterate so far.
        now = score_reconstruction(images, truth.images)
        convergence.append(
            {"iteration": iteration, "objective": objective, "psnr": now.psnr, "ssim": now.ssim}
        )

    failure = unusable_view(view)  # a non-finite update or weight: nothing to invert
    if failure is not None:
        return _not_run(target.prior_tiles(), truth.masks), failure, convergence
    recon = attack.reconstruct(
        view,
        seed=config.seed,
        device=resolve_device(config.device),
        progress=on_iteration,
        observer=record if a.convergence_every else None,
        observe_every=a.convergence_every or 1,
    )
    return recon, None, convergence


def public_tiles(config: ExperimentConfig, target: Target, attack: Any) -> Any:
    """The tiles that the server may legitimately hold, for an attack that learns from them, or
    ``None`` (none wanted, or a source with none to draw). From the attack's public folder when it
    names one (:func:`public_folder_tiles`); else, on the embedded synthetic data, from the
    generator with the site's stain (granted: the stronger attacker) at a seed of their own, so none
    is a client's tile."""
    n = attack.public_tiles_wanted()
    if n == 0:
        return None
    if folder := attack.public_source():
        return public_folder_tiles(config, folder, n, target.site)
    if target.info.get("source") != "synthetic" or "stain" not in target.info:
        return None
    from feddp_eval.data.stain import StainProfile
    from feddp_eval.data.synthetic import synthesize_tiles
    from feddp_eval.seeding import derive_seed

    return synthesize_tiles(
        n,
        stain=StainProfile(**target.info["stain"]),
        tile_size=config.data.tile_size,
        seed=derive_seed(config.seed, "public-tiles", target.site),
        difficulty=target.info.get("difficulty", "easy"),
    )


def public_folder_tiles(config: ExperimentConfig, folder: str, n: int, site: int) -> Any:
    """``n`` tiles of ``folder`` (``images/`` + ``masks/``), cut at the run's tile size and mode,
    drawn by a shuffle seeded from the experiment seed and the attacked site.

    Raises:
        ConfigError: the folder cuts into fewer than ``n`` tiles.
        DataError: the folder or one of its files cannot be read.
    """
    import torch

    from feddp_eval.data.folder import load_tiles
    from feddp_eval.seeding import derive_seed

    data = config.data
    tiles = load_tiles(folder, tile_size=data.tile_size, mode=data.tile_mode)
    if len(tiles) < n:
        raise ConfigError(
            f"the public folder {folder} cuts into {len(tiles):,} tiles of {data.tile_size} px "
            f"({data.tile_mode}), and the attack learns from {n:,} (`public_tiles` + `validation`): "
            "add images to it, or ask for fewer (`--attack-option public_tiles=N`)"
        )
    generator = torch.Generator().manual_seed(derive_seed(config.seed, "public-tiles", site))
    return tiles.subset(torch.randperm(len(tiles), generator=generator)[:n])


def simulated_release(metadata: dict[str, Any]) -> Any:
    """``release(updates, recipe, generator)``: the captured client's defense applied to one-tile
    rounds the server simulates (``Defense.release_simulated``), from the settings the capture
    publishes, or ``None`` when the capture records no defense."""
    published = metadata.get("defense")
    if not published:
        return None
    from defenses import DEFENSES
    from defenses.base import SimulatedRelease

    defense = DEFENSES.get(published["name"])  # a composed run's record names its client side
    settings = {**published, "batch_size": metadata["batch_size"], "n_samples": metadata["n_samples"]}

    def release(updates: Any, recipe: Any, generator: Any) -> Any:
        return defense.release_simulated(updates, SimulatedRelease(settings, recipe, generator))

    return release


def _score(target: Target, recon: Any, lpips: Any) -> tuple[Any, Any, Any, Any]:
    """Scores of the reconstruction, of the mean-colour prior, (masks known) of the painted masks and
    (where it holds one) of the attack's own guess without the update (``Reconstruction.guess``)."""
    from feddp_eval.metrics.privacy import prior_baseline, score_reconstruction

    truth, metric = target.truth, (lpips if lpips.available else None)
    scores = score_reconstruction(
        recon.images, truth.images, recon_masks=recon.masks, true_masks=truth.masks, lpips=metric
    )
    baseline = prior_baseline(
        target.mean_tile, truth.images, truth.masks, foreground_fraction=target.foreground, lpips=metric
    )
    painted = (
        score_reconstruction(target.painted, truth.images, lpips=metric) if target.mask == "known" else None
    )
    own = None if recon.guess is None else score_reconstruction(recon.guess, truth.images, lpips=metric)
    return scores, baseline, painted, own


def _attack_dir(run_dir: Path, config: ExperimentConfig, target: Target) -> Path:
    a, rounds = config.attack, [c.round for c in target.captures]
    where = f"rounds{rounds[0]}-{rounds[-1]}" if a.multi_round else f"round{a.target_round}"
    return run_dir / "attacks" / f"{a.name}-site{target.site}-{where}-mask-{target.mask}"


def _write_files(attack_dir: Path, target: Target, recon: Any, convergence: list[dict[str, Any]]) -> Path:
    """convergence.csv, the reconstruction, and the matched tiles; returns the tiles file."""
    if convergence:
        write_csv(attack_dir / "convergence.csv", convergence, CONVERGENCE_COLUMNS)
    save_tensors(attack_dir / "reconstruction.safetensors", {"images": recon.images, "masks": recon.masks})
    tiles = attack_dir / "tiles.safetensors"
    _save_matched_tiles(tiles, target.truth, recon, target.prior_tiles())
    return tiles


def _scenario(config: ExperimentConfig, target: Target, attack: Any) -> dict[str, Any]:
    """The attacked client round(s) and the threat model, in words, for tables and reports."""
    a, first = config.attack, target.captures[0]
    rounds = [c.round for c in target.captures]
    return {
        "site": target.name,
        "site_index": target.site,
        "round": a.target_round,
        "rounds": rounds,
        "tiles": len(target.truth),
        "local_steps": first.metadata["local_steps"],
        "batch_size": first.metadata["batch_size"],
        "mask": target.mask,
        "threat": columns.threat_text(attack, target.mask, rounds if a.multi_round else None),
    }


def _guess(target: Target) -> Any:
    """The attacker's guess without the update, as tiles (for the comparison grid)."""
    import torch

    from feddp_eval.data.types import TileSet

    masks = target.truth.masks
    if target.mask != "known":
        masks = torch.full_like(masks, float(target.foreground > 0.5))
    return TileSet(target.prior_tiles(), masks)


def _not_run(images: Any, masks: Any) -> Any:
    """A placeholder reconstruction for an attack that could not run (its scores are discarded)."""
    from attacks import Reconstruction

    return Reconstruction(images.clone(), masks.clone(), math.nan, [], 0, 0.0, "not run")


def attack_settings(a: Any) -> dict[str, Any]:
    """The attack's constructor settings from :class:`~feddp_eval.config.AttackSettings` ``a``:
    the schedule (budget or explicit), the time limit, the recipe, the attack's own
    ``[attack.<name>]`` table (over the recipe), and an explicit image/init."""
    from attacks import ATTACKS

    iterations, restarts = a.schedule
    settings: dict[str, Any] = {
        "iterations": iterations,
        "restarts": restarts,
        "time_budget": a.time_budget or None,
        "plateau": a.plateau,
    }
    settings.update(ATTACKS.get(a.name).recipes[a.recipe])  # a recipe the attack lacks: refused by validate()
    settings.update(a.options.get(a.name, {}))
    chosen = {"image": a.image, "init": a.init}
    settings.update({k: v for k, v in chosen.items() if v is not None})
    return settings


def _target_captures(run_dir: Path, site: int, a: Any) -> list[Any]:
    """The attacked site's captures: the target round's, or (``target_round = "all"``) every round's
    it took part in, in round order, cut to the first ``rounds_used`` when that is set."""
    from feddp_eval.federated.capture import list_captures

    taken = [c for c in list_captures(run_dir) if c.site_index == site]
    if not a.multi_round:
        captures = [c for c in taken if c.round == a.target_round]
        if not captures:
            raise RunDirError(
                f"no capture of site {site} in round {a.target_round} in {run_dir}; the site may "
                "not have been sampled that round (pick another --target-round or --target-site)"
            )
        return captures
    if not taken or len(taken) < a.rounds_used:
        raise RunDirError(
            f"--rounds-used {a.rounds_used} but site {site} took part in {len(taken)} captured rounds "
            f"in {run_dir}; use at most {len(taken)} (or 0 for all of them)"
        )
    return taken[: a.rounds_used or None]


def _save_matched_tiles(path: Path, truth: Any, recon: Any, prior: Any) -> None:
    """True tiles, their matched reconstructions and the prior guess, for galleries and reports.

    ``images[i]`` is the reconstruction matched (Hungarian, as scored) to ``true_images[i]``.
    """
    import torch

    from feddp_eval.metrics.privacy import match_reconstructions

    recon_index, truth_index = match_reconstructions(recon.images, truth.images)
    images, masks = torch.zeros_like(truth.images), torch.zeros_like(truth.masks)  # unmatched: black
    for r, t in zip(recon_index, truth_index, strict=True):
        images[t], masks[t] = recon.images[r].clamp(0, 1), recon.masks[r]
    save_tensors(
        path,
        {
            "true_images": truth.images,
            "true_masks": truth.masks,
            "images": images,
            "masks": masks,
            "prior_images": prior,
        },
    )


# --------------------------------------------------------------------------- an attack that could not run


def unusable_view(view: Any) -> str | None:
    """Why a server view cannot be attacked (a non-finite update or weight), or ``None``."""
    from feddp_eval.federated.finite import require_finite

    try:
        require_finite(view.update, what="the captured update", fix="")
        require_finite(view.global_weights, what="the weights the server sent", fix="")
    except NonFiniteError as exc:
        return str(exc).split(";")[0]
    return None


def failed_reconstruction(stopped: str, objective: float, restart_objectives: Sequence[float]) -> str | None:
    """Why a reconstruction is no result: its loop stopped on a non-finite objective before any
    finite one (its images are still the starting guess), else ``None``."""
    finite = math.isfinite(objective) or any(math.isfinite(o) for o in restart_objectives)
    if stopped == "non-finite" and not finite:
        return "the attack objective was not finite from the first iteration"
    return None
