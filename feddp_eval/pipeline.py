"""The library API: what ``feddp-eval`` commands call, usable from notebooks and other tools.

Each stage reads its inputs from, and writes its outputs into, a run directory,
so a stage can be re-run alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feddp_eval.config import ExperimentConfig, config_hash, with_overrides
from feddp_eval.errors import ConfigError
from feddp_eval.io import save_tensors, write_csv, write_json
from feddp_eval.runs import SUMMARY, default_run_dir, finished_summary, prepare_run_dir, write_manifest

EVAL_COLUMNS = ("round", "site", "n_tiles", "dice", "jaccard", "accuracy")
CLIENT_COLUMNS = ("round", "site", "n_samples", "local_steps", "train_loss", "seconds")
CONVERGENCE_COLUMNS = ("iteration", "objective", "psnr", "ssim")


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`run_train`; ``summary`` is what ``--json`` prints."""

    run_dir: Path
    summary: dict[str, Any]
    reused: bool

    @property
    def dice(self) -> float:
        return float(self.summary["dice"])


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("`device` is 'cuda' but no CUDA device is available; use --device cpu or auto")
    return name


def run_train(
    config: ExperimentConfig,
    *,
    run_dir: str | Path | None = None,
    force: bool = False,
    on_round: Callable[[Any], None] | None = None,
) -> TrainResult:
    """Train FedAvg (behind the configured defense), capture every update, and evaluate each round.

    A finished run of the same config in ``run_dir`` is reused unless ``force``. A run that fails
    part-way (an error, Ctrl-C, a full disk) is removed, so nothing half-written is left behind or
    mistaken for a result.

    Args:
        config: A validated experiment config.
        run_dir: Where to write; default ``runs/<config hash>``.
        force: Retrain even when a finished run of this config is there.
        on_round: Called with each :class:`~feddp_eval.federated.loop.RoundRecord`.
    """
    from feddp_eval.runcheck import discard_unfinished

    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    if not force and (summary := finished_summary(run_dir, config)) is not None:
        return TrainResult(run_dir, summary, reused=True)
    with discard_unfinished(run_dir, config_hash=config_hash(config)):
        return _train(config, run_dir, force=force, on_round=on_round)


def _train(
    config: ExperimentConfig, run_dir: Path, *, force: bool, on_round: Callable[[Any], None] | None
) -> TrainResult:
    """The training run itself, written into ``run_dir`` (see :func:`run_train`)."""
    import torch

    from defenses import build_defense
    from feddp_eval.data.sites import build_sites
    from feddp_eval.federated.capture import CaptureWriter
    from feddp_eval.federated.engine import build_engine
    from feddp_eval.federated.loop import FedAvgJob
    from feddp_eval.models.unet import UNet, count_parameters
    from feddp_eval.seeding import derive_seed

    device = resolve_device(config.device)
    hooks = build_defense(config.defense)
    sites = build_sites(config.data, seed=derive_seed(config.seed, "data"))
    prepare_run_dir(run_dir, config, force=force)
    started = time.time()
    write_manifest(run_dir, config, device=device, started=started, status="running")

    torch.manual_seed(derive_seed(config.seed, "model-init"))
    m = config.model
    model = UNet(depth=m.depth, width=m.width, groups=m.groups, activation=m.activation)
    capture = CaptureWriter(run_dir) if config.capture else None
    malicious = malicious_server(config)
    job = FedAvgJob(
        sites=sites,
        model=model,
        train=config.train,
        seed=config.seed,
        device=torch.device(device),
        hooks=hooks,
        capture=capture,
        on_round=on_round,
        malicious=malicious,
    )
    result = build_engine(config.train.engine).run(job)

    evaluation = [row for r in result.rounds for row in r.evaluation]
    clients = [row for r in result.rounds for row in r.clients]
    write_csv(run_dir / "metrics.csv", evaluation, EVAL_COLUMNS)
    write_csv(run_dir / "clients.csv", clients, CLIENT_COLUMNS)
    save_tensors(run_dir / "model.safetensors", dict(model.named_parameters()))
    privacy = result.privacy_summary()
    write_json(run_dir / "privacy.json", privacy)
    write_json(
        run_dir / "sites.json",
        [
            {
                "index": i,
                "name": s.name,
                "train_tiles": len(s.train),
                "test_tiles": len(s.test),
                "info": s.info,
                "public": _public_statistics(s),
            }
            for i, s in enumerate(sites)
        ],
    )

    final = result.rounds[-1]
    summary = {
        "run_dir": str(run_dir),
        "config_hash": config_hash(config),
        "rounds": config.train.rounds,
        "dice": final.pooled["dice"],
        "jaccard": final.pooled["jaccard"],
        "accuracy": final.pooled["accuracy"],
        "sites": {
            row["site"]: {k: row[k] for k in ("dice", "jaccard", "accuracy")} for row in final.evaluation
        },
        "defense": hooks.describe(),
        "privacy": {k: v for k, v in privacy.items() if k != "per_client"},
        "epsilon": privacy["epsilon"],
        "delta": privacy["delta"],
        "granularity": privacy["granularity"],
        "warnings": list(hooks.notes),
        "model_parameters": count_parameters(model),
        "seconds": round(time.time() - started, 3),
    }
    write_json(run_dir / SUMMARY, summary)
    write_manifest(
        run_dir,
        config,
        device=device,
        started=started,
        status="complete",
        extra={"model_parameters": summary["model_parameters"], "privacy": summary["privacy"]},
    )
    return TrainResult(run_dir, summary, reused=False)


def malicious_server(config: ExperimentConfig) -> Any:
    """The malicious server (an ``ImprintServer``) an ``imprint`` attack needs, else ``None``."""
    from feddp_eval.config import server_modification
    from feddp_eval.federated.malicious import ImprintServer

    server = server_modification(config)
    if server is None:
        return None
    return ImprintServer(site=server["site"], round=server["round"], bins=server["bins"], gain=server["gain"])


def _public_statistics(site: Any) -> dict[str, Any]:
    """What a site may publish without revealing a training tile: its held-out tiles' mean colour,
    mean nuclei and background colours, foreground fraction, and the mean and spread of tile
    brightness. The prior baseline, the attack's starting point and a malicious server's imprint
    thresholds use these."""
    from feddp_eval.federated.malicious import public_brightness

    images, masks = site.test.images, site.test.masks
    foreground = masks.sum().clamp_min(1.0)
    background = (1 - masks).sum().clamp_min(1.0)
    brightness_mean, brightness_std = public_brightness(site)
    return {
        "mean_rgb": images.mean(dim=(0, 2, 3)).tolist(),
        "foreground_rgb": ((images * masks).sum(dim=(0, 2, 3)) / foreground).tolist(),
        "background_rgb": ((images * (1 - masks)).sum(dim=(0, 2, 3)) / background).tolist(),
        "foreground_fraction": float(masks.mean()),
        "brightness_mean": brightness_mean,
        "brightness_std": brightness_std,
    }


# --------------------------------------------------------------------------- attack


@dataclass(frozen=True)
class AttackResult:
    """Outcome of :func:`run_attack`: one row per arm, and where everything was written."""

    out_dir: Path
    rows: list[dict[str, Any]]
    scenario: dict[str, Any]
    grid: Path | None

    def to_json(self) -> dict[str, Any]:
        return {"run_dir": str(self.out_dir), "scenario": self.scenario, "rows": self.rows}


def defended_config(
    config: ExperimentConfig, *, noise: float | None, defense: str | None
) -> ExperimentConfig:
    """The DP arm: ``config`` with ``noise`` (and ``defense``, default dp-sgd when noise > 0) applied."""
    name = defense or (config.defense.name if config.defense.name != "none" else "dp-sgd")
    return with_overrides(config, {"defense.name": name, "defense.noise": noise})


def reference_config(config: ExperimentConfig) -> ExperimentConfig:
    """The undefended arm of the same experiment (a calibration target is cleared too: ``with_overrides``
    reads ``None`` as "leave unchanged", so the defense is replaced directly)."""
    import dataclasses

    from feddp_eval.config import validate

    undefended = dataclasses.replace(config.defense, name="none", noise=0.0, target_epsilon=None)
    return validate(dataclasses.replace(config, defense=undefended))


def run_attack(
    config: ExperimentConfig,
    *,
    out: str | Path = "runs",
    reference: bool = True,
    on_stage: Callable[[str], None] | None = None,
    on_iteration: Callable[[int, int, float], None] | None = None,
) -> AttackResult:
    """Train (or reuse) the defended run and the undefended reference, attack the same client round in both.

    Args:
        config: The defended experiment; ``config.attack`` picks the attack, target and knowledge.
        out: Folder holding the training runs (``<out>/<config hash>``) and the attack results.
        reference: Also train and attack the undefended arm.
        on_stage: Called with a short description when a stage starts.
        on_iteration: Attack progress: (iteration, total, best objective).
    """
    from feddp_eval.metrics.perceptual import LPIPSMetric

    preflight_attack(config)
    out = Path(out)
    lpips = LPIPSMetric(config.attack.lpips_net)  # loads backbone weights once for every arm
    arms = ([reference_config(config)] if reference and config.defense.name != "none" else []) + [config]
    results_dir = out / f"attack-{config_hash(config, include_attack=True)[:12]}"
    rows, reconstructions, truth = [], [], None
    scenario: dict[str, Any] = {}
    for arm in arms:
        label = (
            arm.defense.name if arm.defense.name == "none" else f"{arm.defense.name} σ={arm.defense.noise:g}"
        )
        if on_stage:
            on_stage(f"training [{label}]")
        trained = run_train(arm, run_dir=out / config_hash(arm)[:12])
        if on_stage:
            on_stage(f"attacking [{label}]")
        row, recon, truth, scenario, guess = _attack_run(arm, trained, lpips, on_iteration=on_iteration)
        rows.append(row)
        reconstructions.append((label, recon))
    write_json(results_dir / "results.json", {"scenario": scenario, "rows": rows})
    grid = None
    if truth is not None:
        from feddp_eval.viz import save_comparison_grid

        grid = save_comparison_grid(
            results_dir / "reconstructions.png", truth, [("prior", guess), *reconstructions]
        )
    return AttackResult(results_dir, rows, scenario, grid)


def preflight_attack(config: ExperimentConfig) -> None:
    """Refuse an unknown attack or a target site the run will not have, before any training."""
    from attacks import ATTACKS
    from feddp_eval.safety import sampling_problem, target_problem

    ATTACKS.get(config.attack.name)  # an unknown name is a ConfigError listing the known ones
    if (problem := target_problem(config) or sampling_problem(config)) is not None:
        raise ConfigError(problem)


def _attack_run(
    config: ExperimentConfig,
    trained: TrainResult,
    lpips: Any,
    *,
    on_iteration: Callable[[int, int, float], None] | None,
) -> tuple[dict[str, Any], Any, Any, dict[str, Any], Any]:
    """Attack one training run's target capture and score it against ground truth and the prior."""
    import torch

    from attacks import ATTACKS, Attack, AttackerKnowledge
    from attacks.view import multi_round_view, server_view
    from feddp_eval.data.types import TileSet
    from feddp_eval.federated.capture import load_ground_truth
    from feddp_eval.metrics.privacy import mask_painted_prior, prior_baseline, score_reconstruction
    from feddp_eval.runcheck import read_sites
    from feddp_eval.safety import failed_reconstruction, mark_not_run, unusable_view

    a = config.attack
    run_dir = trained.run_dir
    sites = read_sites(run_dir)
    site = a.target_site if a.target_site >= 0 else min(sites, key=lambda s: s["train_tiles"])["index"]
    if site >= len(sites):
        raise ConfigError(
            f"`attack.target_site` is {site} but the run has {len(sites)} sites (0..{len(sites) - 1})"
        )
    captures = _target_captures(run_dir, site, a)
    capture = captures[0]
    # Scoring only; the attack sees the masks if known. Several rounds: the union of their tiles.
    truth = load_ground_truth(run_dir, captures, tile_size=config.data.tile_size)
    public = sites[site]["public"]
    foreground = float(public["foreground_fraction"])
    size = config.data.tile_size
    mean_tile = torch.tensor(public["mean_rgb"])[:, None, None].expand(3, size, size)
    painted = mask_painted_prior(
        truth.masks, torch.tensor(public["foreground_rgb"]), torch.tensor(public["background_rgb"])
    )
    # The attacker's best guess before reading the update: with the masks in hand, the masks painted
    # in the site's public nuclei and background colours; without them, the site's mean colour.
    # A malicious server's imprint needs no mask: it is judged against the mean colour.
    malicious = ATTACKS.get(a.name).threat != Attack.threat
    mask = "unknown" if malicious else a.mask
    prior = painted if mask == "known" else mean_tile
    knowledge = AttackerKnowledge(mask=mask)
    build_view = multi_round_view if a.multi_round else server_view
    view = build_view(
        captures if a.multi_round else capture,  # type: ignore[arg-type]
        config.model,
        knowledge,
        tile_size=size,
        masks=truth.masks if mask == "known" else None,
        prior=prior,
        foreground_prior=foreground,
    )
    settings = attack_settings(a)
    restarts = settings["restarts"]
    attack = ATTACKS.create(a.name, **settings)
    convergence: list[dict[str, Any]] = []

    def record(iteration: int, images: Any, objective: float) -> None:
        # The scorer, not the attack, reads the truth: PSNR/SSIM of the best iterate so far.
        now = score_reconstruction(images, truth.images)
        convergence.append(
            {"iteration": iteration, "objective": objective, "psnr": now.psnr, "ssim": now.ssim}
        )

    failure = unusable_view(view)  # a non-finite update or weight: nothing to invert
    recon = (
        attack.reconstruct(
            view,
            seed=config.seed,
            device=resolve_device(config.device),
            progress=on_iteration,
            observer=record if a.convergence_every else None,
            observe_every=a.convergence_every or 1,
        )
        if failure is None
        else _not_run(prior.expand(len(truth), 3, size, size), truth.masks)
    )
    failure = failure or failed_reconstruction(recon.stopped, recon.objective, recon.restart_objectives)
    scores = score_reconstruction(
        recon.images,
        truth.images,
        recon_masks=recon.masks,
        true_masks=truth.masks,
        lpips=lpips if lpips.available else None,
    )
    metric = lpips if lpips.available else None
    baseline = prior_baseline(
        mean_tile, truth.images, truth.masks, foreground_fraction=foreground, lpips=metric
    )
    mask_baseline = score_reconstruction(painted, truth.images, lpips=metric) if mask == "known" else None
    rounds = [c.round for c in captures]
    where = f"rounds{rounds[0]}-{rounds[-1]}" if a.multi_round else f"round{a.target_round}"
    attack_dir = run_dir / "attacks" / f"{a.name}-site{site}-{where}-mask-{mask}"
    if convergence:
        write_csv(attack_dir / "convergence.csv", convergence, CONVERGENCE_COLUMNS)
    save_tensors(attack_dir / "reconstruction.safetensors", {"images": recon.images, "masks": recon.masks})
    tiles = attack_dir / "tiles.safetensors"
    _save_matched_tiles(tiles, truth, recon, prior.expand(len(truth), 3, size, size))
    summary = trained.summary
    reference = "painted-mask" if mask == "known" else "mean-colour"
    row = {
        "defense": config.defense.name,
        "noise": config.defense.noise,
        "epsilon": summary.get("epsilon"),
        "delta": summary.get("delta"),
        "granularity": summary.get("granularity"),
        "accountant": summary["privacy"].get("accountant"),
        "dice": summary["dice"],
        "jaccard": summary["jaccard"],
        "accuracy": summary["accuracy"],
        "psnr": scores.psnr,
        "ssim": scores.ssim,
        "lpips": scores.lpips,
        # A given mask scores nothing; an imprint recovers no mask.
        "mask_dice": scores.mask_dice if mask == "unknown" and not malicious else None,
        "prior_psnr": baseline.psnr,
        "prior_ssim": baseline.ssim,
        "prior_lpips": baseline.lpips,
        "prior_mask_dice": baseline.mask_dice if mask == "unknown" and not malicious else None,
        "mask_prior_psnr": mask_baseline.psnr if mask_baseline else None,
        "mask_prior_ssim": mask_baseline.ssim if mask_baseline else None,
        "mask_prior_lpips": mask_baseline.lpips if mask_baseline else None,
        **leakage_reading(scores, mask_baseline or baseline, reference=reference),
        **(_imprint_facts(capture, truth, recon) if malicious else {}),
        "threat": "malicious" if malicious else "honest",
        "attack": a.name,
        "iterations": recon.iterations,
        "restarts": restarts,
        "rounds_used": len(captures),
        "seconds": round(recon.seconds, 2),
        "stopped": recon.stopped,
        "objective": recon.objective if math.isfinite(recon.objective) else None,
        "lpips_missing": None if lpips.available else lpips.missing_reason,
        "run_dir": str(run_dir),
        "tiles": str(tiles),
    }
    if failure is not None:
        row = mark_not_run(row, failure)  # no metric of the prior's is passed off as the attack's
    write_json(
        attack_dir / "scores.json",
        {
            "row": row,
            "scores": scores.to_dict(),
            "prior": baseline.to_dict(),
            "mask_prior": mask_baseline.to_dict() if mask_baseline else None,
        },
    )
    scenario = {
        "site": sites[site]["name"],
        "site_index": site,
        "round": a.target_round,
        "rounds": rounds,
        "tiles": len(truth),
        "local_steps": capture.metadata["local_steps"],
        "batch_size": capture.metadata["batch_size"],
        "mask": mask,
        "threat": _threat_text(attack, mask, rounds if a.multi_round else None),
    }
    guess = TileSet(
        prior.expand(len(truth), 3, size, size),
        truth.masks if mask == "known" else torch.full_like(truth.masks, float(foreground > 0.5)),
    )
    return row, recon, truth, scenario, guess


def _threat_text(attack: Any, mask: str, rounds: list[int] | None = None) -> str:
    """The threat model in force, in words, for tables and reports (``rounds``: inverted jointly)."""
    from attacks import Attack

    if attack.threat != Attack.threat:
        return (
            f"{attack.threat}; the target trains it with its own loss, optimizer and defense; "
            "sees the released update; needs no mask"
        )
    return (
        "honest-but-curious server; sees each client's released update; knows architecture, "
        "global weights, loss and local hyper-parameters"
        + (
            "; knows the true masks (worst case: an upper bound on leakage)"
            if mask == "known"
            else "; recovers the masks jointly with the images"
        )
        + (
            f"; keeps the site's updates of rounds {rounds} and inverts them jointly, telling tiles "
            "apart across rounds by the recorded sample indices"
            if rounds
            else ""
        )
    )


EXACT_PSNR = 40.0  # dB: a tile recovered at or above this is, to the eye, the tile itself


def leakage_reading(scores: Any, reference_scores: Any, *, reference: str) -> dict[str, Any]:
    """Leakage read against the strongest guess the attacker holds without the update.

    Args:
        scores: :class:`~feddp_eval.metrics.privacy.ReconstructionScores` of the reconstruction.
        reference_scores: The same scores of that guess (the prior columns of the row).
        reference: Its name, ``painted-mask`` or ``mean-colour``.

    Returns:
        ``prior_kind``; ``margin_psnr`` / ``margin_ssim``: mean PSNR / SSIM minus the reference's;
        ``tiles_beating_prior``: matched tiles whose PSNR beats the reference guess of that tile;
        ``tiles_exact``: matched tiles at PSNR >= 40 dB.
    """
    guess = dict(zip(reference_scores.truth_index, reference_scores.psnr_per_pair, strict=True))
    pairs = list(zip(scores.truth_index, scores.psnr_per_pair, strict=True))
    return {
        "prior_kind": reference,
        "margin_psnr": scores.psnr - reference_scores.psnr,
        "margin_ssim": scores.ssim - reference_scores.ssim,
        "tiles_beating_prior": sum(1 for t, value in pairs if value > guess[t]),
        "tiles_exact": sum(1 for _, value in pairs if value >= EXACT_PSNR),
    }


def _imprint_facts(capture: Any, truth: Any, recon: Any) -> dict[str, Any]:
    """How many true tiles were alone in an imprint slot (scoring side), and how many the attack read."""
    from collections import Counter

    from feddp_eval.models.imprint import slot_of

    thresholds = capture.metadata.get("model", {}).get("thresholds", [])
    slots = Counter(slot_of(float(b), thresholds) for b in truth.images.mean(dim=(1, 2, 3)))
    return {
        "tiles_alone": sum(1 for slot, count in slots.items() if count == 1 and slot >= 0),
        "tiles_read": recon.details.get("tiles_read"),
    }


def _not_run(images: Any, masks: Any) -> Any:
    """A placeholder reconstruction for an attack that could not run (its scores are discarded)."""
    from attacks import Reconstruction

    return Reconstruction(images.clone(), masks.clone(), math.nan, [], 0, 0.0, "not run")


def attack_settings(a: Any) -> dict[str, Any]:
    """The attack's constructor settings from :class:`~feddp_eval.config.AttackSettings` ``a``:
    the schedule (budget or explicit), the time limit, the recipe, and an explicit image/init."""
    iterations, restarts = a.schedule
    settings: dict[str, Any] = {
        "iterations": iterations,
        "restarts": restarts,
        "time_budget": a.time_budget or None,
    }
    if a.recipe == "paper":
        from attacks.inverting_gradients import PAPER_RECIPE

        settings.update(PAPER_RECIPE)
    chosen = {"image": a.image, "init": a.init}
    settings.update({k: v for k, v in chosen.items() if v is not None})
    return settings


def _target_captures(run_dir: Path, site: int, a: Any) -> list[Any]:
    """The attacked site's captures: the target round's, or (``target_round = "all"``) every round's
    it took part in, in round order, cut to the first ``rounds_used`` when that is set."""
    from feddp_eval.errors import RunDirError
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


# --------------------------------------------------------------------------- check


@dataclass(frozen=True)
class CheckResult:
    """Outcome of :func:`run_check`: every bound's verdict, and the rows they were checked on."""

    verdicts: list[Any]
    rows: list[dict[str, Any]]
    source: str

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "source": self.source,
            "checks": [
                {
                    "arm": v.bound.arm,
                    "metric": v.bound.metric,
                    "kind": v.bound.kind,
                    "bound": v.bound.value,
                    "tolerance": v.bound.tolerance,
                    "value": v.value,
                    "margin": v.margin,
                    "passed": v.passed,
                    "message": v.message,
                }
                for v in self.verdicts
            ],
        }


def scenario_config(baseline: Any) -> ExperimentConfig:
    """The experiment a baseline pins (seed included), validated."""
    from feddp_eval.config import from_dict, validate

    try:
        return validate(from_dict(ExperimentConfig, baseline.scenario))
    except ConfigError as exc:
        raise ConfigError([f"scenario: {p}" for p in exc.problems], source=str(baseline.path)) from None


def run_check(
    baseline_path: str | Path,
    *,
    results: str | Path | None = None,
    out: str | Path = "runs",
    on_stage: Callable[[str], None] | None = None,
    on_iteration: Callable[[int, int, float], None] | None = None,
) -> CheckResult:
    """Compare a scenario's leakage and utility with the bounds of a baseline file.

    Args:
        baseline_path: The baseline TOML (see :mod:`feddp_eval.gate`).
        results: An attack ``results.json`` (or the folder holding it) to check instead of running.
        out: Where a fresh run of the scenario is written (training runs are reused by hash).
        on_stage: Stage callback, as for :func:`run_attack`.
        on_iteration: Attack progress callback, as for :func:`run_attack`.
    """
    from feddp_eval.errors import RunDirError
    from feddp_eval.gate import arm_attack, evaluate, load_baseline
    from feddp_eval.io import read_json
    from feddp_eval.runcheck import result_rows
    from feddp_eval.safety import require_verdicts

    baseline = load_baseline(baseline_path)
    scenario = scenario_config(baseline)  # an invalid scenario is an error with --results too
    check_arms(baseline)
    if results is not None:
        path = Path(results)
        path = path / "results.json" if path.is_dir() else path
        if not path.is_file():
            raise RunDirError(f"{path} does not exist; pass an attack results.json or the folder holding it")
        rows = result_rows(read_json(path), path)
        verdicts = evaluate(baseline.bounds, rows)
        require_verdicts(verdicts, rows, source=str(path))
        return CheckResult(verdicts, rows, str(path))
    # The scenario's own attack, then every other attack an arm names (each on its own runs).
    attacks = [scenario.attack.name]
    attacks += sorted({a for b in baseline.bounds if (a := arm_attack(b.arm)) and a not in attacks})
    rows, sources = [], []
    for name in attacks:
        config = with_overrides(scenario, {"attack.name": name})
        attacked = run_attack(config, out=out, on_stage=on_stage, on_iteration=on_iteration)
        rows += attacked.rows
        sources.append(str(attacked.out_dir))
    verdicts = evaluate(baseline.bounds, rows, attack=scenario.attack.name)
    require_verdicts(verdicts, rows, source=", ".join(sources))
    return CheckResult(verdicts, rows, ", ".join(sources))


def check_arms(baseline: Any) -> None:
    """Refuse a baseline whose arms name an unknown defense or attack (exit 2, before any run)."""
    from attacks import ATTACKS
    from defenses import DEFENSES
    from feddp_eval.safety import arm_problems

    problems = arm_problems(
        [b.arm for b in baseline.bounds], defenses=DEFENSES.names(), attacks=ATTACKS.names()
    )
    if problems:
        raise ConfigError(problems, source=str(baseline.path))


# --------------------------------------------------------------------------- sweep


@dataclass(frozen=True)
class SweepResult:
    """Outcome of :func:`run_sweep`: the finished rows (grid order) and what is still missing."""

    out_dir: Path
    rows: list[dict[str, Any]]
    missing: list[str]
    computed: int

    @property
    def results(self) -> Path:
        from feddp_eval.sweep import RESULTS_FILE

        return self.out_dir / RESULTS_FILE

    def to_json(self) -> dict[str, Any]:
        return {
            "sweep_dir": str(self.out_dir),
            "results": str(self.results),
            "points": len(self.rows) + len(self.missing),
            "finished": len(self.rows),
            "computed": self.computed,
            "missing": self.missing,
            "rows": self.rows,
        }


def run_sweep(
    config: ExperimentConfig,
    spec: Any,
    *,
    out: str | Path = "runs/sweep",
    jobs: int = 1,
    command: list[str] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_point: Callable[[str], None] | None = None,
) -> SweepResult:
    """Train → capture → attack → score every point of a privacy–utility grid; resumable.

    Points are keyed by config hash: a finished point (``points/<key>/row.json``) is never
    recomputed, so an interrupted sweep (Ctrl-C, kill -9, power loss) picks up where it stopped
    and ends with the same ``results.csv``. Points sharing a training run train it once.

    Args:
        config: The base experiment (its seed is the first seed; its defense is replaced per point).
        spec: A :class:`~feddp_eval.sweep.SweepSpec`.
        out: The sweep folder.
        jobs: Worker processes; each takes one training run and its attacks at a time.
        command: The command line recorded in ``sweep.json`` (default ``sys.argv``).
        on_start: Called once with (points already finished, points in the grid).
        on_stage: Called with a short description whenever a point enters a stage.
        on_point: Called with a point's label when it finishes.
    """
    import sys

    from attacks import ATTACKS
    from defenses import DEFENSES
    from feddp_eval.runcheck import discard_new_sweep
    from feddp_eval.safety import planned_sites
    from feddp_eval.sweep import SWEEP_FILE, check_sweep_dir, plan, sweep_manifest, validate_spec

    spec = validate_spec(spec, defenses=DEFENSES.names(), attacks=ATTACKS.names())
    sites = planned_sites(config.data)  # synthetic, or a folder's site count: known before training
    if sites is not None and any(t >= sites for t in spec.targets):
        raise ConfigError(
            f"`sweep.targets` {list(spec.targets)} names a site beyond the {sites} "
            f"{'synthetic ' if config.data.source == 'synthetic' else ''}sites "
            f"(0..{sites - 1}; -1 = the smallest)"
        )
    points = plan(config, spec)
    for point in points:  # an unknown attack or a site left out of the target round: before training
        preflight_attack(point.config)
    out = Path(out)
    check_sweep_dir(out)
    # A sweep folder this call creates is removed when it fails before any point finished, so no
    # empty sweep is left behind looking like a result.
    with discard_new_sweep(out):
        write_json(out / SWEEP_FILE, sweep_manifest(config, spec, points, command or sys.argv))
        return _run_points(out, config, points, jobs, on_start, on_stage, on_point)


def _run_points(
    out: Path,
    config: ExperimentConfig,
    points: list[Any],
    jobs: int,
    on_start: Callable[[int, int], None] | None,
    on_stage: Callable[[str], None] | None,
    on_point: Callable[[str], None] | None,
) -> SweepResult:
    """Compute the sweep's unfinished points (grouped by training run), serially or in ``jobs``
    processes, rebuilding the tables after each; the finished rows in grid order."""
    from feddp_eval.sweep import finished_rows, group_by_run, write_tables

    done = finished_rows(out, points)
    todo = [[p for p in group if p.key not in done] for group in group_by_run(points)]
    todo = [group for group in todo if group]
    write_tables(out, points)
    if on_start:
        on_start(len(done), len(points))
    labels = {p.key: p.label for p in points}
    computed = 0

    def finished(key: str) -> None:
        nonlocal computed
        computed += 1
        write_tables(out, points)
        if on_point:
            on_point(labels[key])

    if jobs <= 1 or len(todo) <= 1:
        from feddp_eval.metrics.perceptual import LPIPSMetric

        lpips = LPIPSMetric(config.attack.lpips_net)
        for group in todo:
            for key in _sweep_group(out, group, lpips, on_stage):
                finished(key)
    else:
        _sweep_parallel(out, todo, jobs, on_stage, finished)
    rows = finished_rows(out, points)
    return SweepResult(
        out,
        [rows[p.key] for p in points if p.key in rows],
        [p.label for p in points if p.key not in rows],
        computed,
    )


def _sweep_group(out: Path, group: list[Any], lpips: Any, on_stage: Callable[[str], None] | None) -> Any:
    """Train (or reuse) one run and attack it for every point in ``group``; yields finished keys."""
    import os

    from feddp_eval.sweep import point_dir

    first = group[0]
    if on_stage:
        on_stage(f"training {first.setting} seed {first.config.seed}")
    trained = run_train(first.config, run_dir=out / first.run_dir)
    for point in group:
        if on_stage:
            on_stage(f"attacking {point.label}")
        row, _, _, scenario, _ = _attack_run(point.config, trained, lpips, on_iteration=None)
        a = point.config.attack
        row.update(
            key=point.key,
            config_hash=point.train_hash,
            seed=point.config.seed,
            target_site=scenario["site_index"],  # -1 resolved to the site actually attacked
            target_round=a.target_round,
            mask=scenario["mask"],
            train_seconds=trained.summary["seconds"],
            run_dir=first.run_dir,
            tiles=Path(os.path.relpath(row["tiles"], out)).as_posix(),
        )
        write_json(point_dir(out, point.key) / "row.json", row)  # the "done" marker, written last
        yield point.key


def _sweep_parallel(
    out: Path,
    todo: list[list[Any]],
    jobs: int,
    on_stage: Callable[[str], None] | None,
    finished: Callable[[str], None],
) -> None:
    """Run the groups in ``jobs`` spawned processes; progress comes back through a queue."""
    import multiprocessing
    import os
    import queue as queue_module
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    from feddp_eval.config import to_dict

    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with context.Manager() as manager:
        messages = manager.Queue()
        # Workers ignore Ctrl-C; on an interrupt (or a worker's error) this process stops them all at
        # once. A point cut short is simply recomputed on resume: its row was never written.
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_ignore_interrupts)
        futures = [
            pool.submit(
                _sweep_worker, str(out), [(p.key, to_dict(p.config)) for p in group], threads, messages
            )
            for group in todo
        ]
        try:
            pending = set(futures)
            while pending:
                finished_now, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                _drain(messages, on_stage, finished, queue_module)
                for future in finished_now:
                    future.result()  # re-raises a worker's error here
            _drain(messages, on_stage, finished, queue_module)
        except BaseException:
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()


def _ignore_interrupts() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _drain(messages: Any, on_stage: Any, finished: Callable[[str], None], queue_module: Any) -> None:
    while True:
        try:
            kind, value = messages.get_nowait()
        except queue_module.Empty:
            return
        if kind == "point":
            finished(value)
        elif on_stage:
            on_stage(value)


def _sweep_worker(out: str, points: list[tuple[str, dict[str, Any]]], threads: int, messages: Any) -> None:
    """One worker process: a training run and its attacks (configs travel as plain dicts)."""
    import torch

    from feddp_eval.config import from_dict
    from feddp_eval.metrics.perceptual import LPIPSMetric
    from feddp_eval.sweep import SweepPoint

    torch.set_num_threads(threads)
    group = [SweepPoint(key, from_dict(ExperimentConfig, raw)) for key, raw in points]
    lpips = LPIPSMetric(group[0].config.attack.lpips_net)
    for key in _sweep_group(Path(out), group, lpips, lambda message: messages.put(("stage", message))):
        messages.put(("point", key))
