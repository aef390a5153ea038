"""``feddp-eval train``: FedAvg behind the configured defense, every update captured, each round evaluated."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feddp_eval.config import ExperimentConfig, config_hash
from feddp_eval.errors import ConfigError
from feddp_eval.io import save_tensors, write_csv, write_json
from feddp_eval.rundir.names import CLIENTS, METRICS, MODEL, PRIVACY, SITES, SUMMARY
from feddp_eval.rundir.prepare import default_run_dir, finished_summary, prepare_run_dir, write_manifest
from feddp_eval.rundir.summary import TrainSummary

EVAL_COLUMNS = ("round", "site", "n_tiles", "dice", "jaccard", "accuracy")
CLIENT_COLUMNS = ("round", "site", "n_samples", "local_steps", "train_loss", "seconds")


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`run_train`; ``summary.to_json()`` is what ``--json`` prints."""

    run_dir: Path
    summary: TrainSummary
    reused: bool

    @property
    def dice(self) -> float:
        return float(self.summary.dice)


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
    from feddp_eval.rundir.check import discard_unfinished

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
    from feddp_eval.audit import enable_audit
    from feddp_eval.data.sites import build_sites
    from feddp_eval.federated.capture import CaptureWriter
    from feddp_eval.federated.engine import build_engine
    from feddp_eval.federated.loop import FedAvgJob
    from feddp_eval.models.unet import UNet
    from feddp_eval.seeding import derive_seed

    device = resolve_device(config.device)
    hooks = enable_audit(build_defense(config.defense), config.train, seed=config.seed)
    sites = build_sites(config.data, seed=derive_seed(config.seed, "data"))
    prepare_run_dir(run_dir, config, force=force)
    started = time.time()
    write_manifest(run_dir, config, device=device, started=started, status="running")

    torch.manual_seed(derive_seed(config.seed, "model-init"))
    model = UNet.from_config(config.model)
    job = FedAvgJob(
        sites=sites,
        model=model,
        train=config.train,
        seed=config.seed,
        device=torch.device(device),
        hooks=hooks,
        capture=CaptureWriter(run_dir) if config.capture else None,
        on_round=on_round,
        malicious=malicious_server(config),
    )
    result = build_engine(config.train.engine).run(job)
    summary = _write_outputs(run_dir, config, sites, model, result, hooks, started)
    write_manifest(
        run_dir,
        config,
        device=device,
        started=started,
        status="complete",
        extra={"model_parameters": summary.model_parameters, "privacy": summary.privacy},
    )
    return TrainResult(run_dir, summary, reused=False)


def _write_outputs(
    run_dir: Path, config: ExperimentConfig, sites: Any, model: Any, result: Any, hooks: Any, started: float
) -> TrainSummary:
    """metrics.csv, clients.csv, the final model, privacy.json (with the audit's ε̂, when on), sites.json
    and the run summary."""
    from feddp_eval.audit import finish_audit

    write_csv(run_dir / METRICS, [row for r in result.rounds for row in r.evaluation], EVAL_COLUMNS)
    write_csv(run_dir / CLIENTS, [row for r in result.rounds for row in r.clients], CLIENT_COLUMNS)
    save_tensors(run_dir / MODEL, dict(model.named_parameters()))
    privacy = result.privacy_summary()
    if (audit := finish_audit(run_dir, hooks, privacy)) is not None:
        privacy["audit"] = audit.to_dict()
    write_json(run_dir / PRIVACY, privacy)
    write_json(
        run_dir / SITES,
        [
            {
                "index": i,
                "name": s.name,
                "train_tiles": len(s.train),
                "test_tiles": len(s.test),
                "info": s.info,
                "public": public_statistics(s),
            }
            for i, s in enumerate(sites)
        ],
    )
    reference = _otsu_reference(sites)
    summary = _summary(run_dir, config, model, result.rounds[-1], hooks, privacy, reference, started)
    write_json(run_dir / SUMMARY, summary.to_json())
    return summary


def _summary(
    run_dir: Path,
    config: ExperimentConfig,
    model: Any,
    final: Any,
    hooks: Any,
    privacy: dict[str, Any],
    reference: dict[str, Any],
    started: float,
) -> TrainSummary:
    """What ``train --json`` prints: the final pooled and per-site utility and the privacy spent."""
    from feddp_eval.models.unet import count_parameters

    return TrainSummary(
        run_dir=str(run_dir),
        config_hash=config_hash(config),
        rounds=config.train.rounds,
        dice=final.pooled["dice"],
        jaccard=final.pooled["jaccard"],
        accuracy=final.pooled["accuracy"],
        sites={row["site"]: {k: row[k] for k in ("dice", "jaccard", "accuracy")} for row in final.evaluation},
        defense=hooks.describe(),
        privacy={k: v for k, v in privacy.items() if k != "per_client"},
        epsilon=privacy["epsilon"],
        delta=privacy["delta"],
        granularity=privacy["granularity"],
        warnings=tuple(hooks.notes),
        model_parameters=count_parameters(model),
        reference=reference,
        seconds=round(time.time() - started, 3),
    )


def _otsu_reference(sites: Any) -> dict[str, Any]:
    """What a pathologist's simplest tool scores on the same held-out tiles: haematoxylin (standard
    H&E deconvolution) thresholded by Otsu, per site and pooled. No model, no federation, no privacy
    cost: the utility floor a trained model has to beat."""
    from feddp_eval.metrics.baselines import otsu_site_scores

    return {"name": "hematoxylin-otsu", "sites": otsu_site_scores(sites)}


def malicious_server(config: ExperimentConfig) -> Any:
    """The malicious server (a :class:`~feddp_eval.federated.malicious.ModelModification`) that an
    attack which modifies the model needs, built by that attack (the ``imprint`` attack's imprint
    server); ``None`` for an honest server's attack, as its card (and so the config hash) says."""
    from attacks import ATTACKS
    from feddp_eval.config import server_modification

    if server_modification(config) is None:
        return None
    return ATTACKS.get(config.attack.name).model_modification(config.attack)


def public_statistics(site: Any) -> dict[str, Any]:
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
