"""The library API: what ``feddp-eval`` commands call, usable from notebooks and other tools.

Each stage reads its inputs from, and writes its outputs into, a run directory,
so a stage can be re-run alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feddp_eval.config import ExperimentConfig, config_hash
from feddp_eval.errors import ConfigError
from feddp_eval.io import save_tensors, write_csv, write_json
from feddp_eval.runs import SUMMARY, default_run_dir, finished_summary, prepare_run_dir, write_manifest

EVAL_COLUMNS = ("round", "site", "n_tiles", "dice", "jaccard", "accuracy")
CLIENT_COLUMNS = ("round", "site", "n_samples", "local_steps", "train_loss", "seconds")


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

    A finished run of the same config in ``run_dir`` is reused unless ``force``.

    Args:
        config: A validated experiment config.
        run_dir: Where to write; default ``runs/<config hash>``.
        force: Retrain even when a finished run of this config is there.
        on_round: Called with each :class:`~feddp_eval.federated.loop.RoundRecord`.
    """
    import torch

    from defenses import build_defense
    from feddp_eval.data.sites import build_sites
    from feddp_eval.federated.capture import CaptureWriter
    from feddp_eval.federated.hooks import privacy_summary
    from feddp_eval.federated.loop import run_fedavg
    from feddp_eval.models.unet import UNet, count_parameters
    from feddp_eval.seeding import derive_seed

    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    if not force and (summary := finished_summary(run_dir, config)) is not None:
        return TrainResult(run_dir, summary, reused=True)
    device = resolve_device(config.device)
    hooks = build_defense(config.defense)
    sites = build_sites(config.data, seed=derive_seed(config.seed, "data"))
    prepare_run_dir(run_dir, config, force=force)
    started = time.time()
    write_manifest(run_dir, config, device=device, started=started, status="running")

    torch.manual_seed(derive_seed(config.seed, "model-init"))
    m = config.model
    model = UNet(depth=m.depth, width=m.width, groups=m.groups)
    capture = CaptureWriter(run_dir) if config.capture else None
    result = run_fedavg(sites, model, config.train, seed=config.seed, device=torch.device(device),
                        hooks=hooks, capture=capture, on_round=on_round)

    evaluation = [row for r in result.rounds for row in r.evaluation]
    clients = [row for r in result.rounds for row in r.clients]
    write_csv(run_dir / "metrics.csv", evaluation, EVAL_COLUMNS)
    write_csv(run_dir / "clients.csv", clients, CLIENT_COLUMNS)
    save_tensors(run_dir / "model.safetensors", dict(model.named_parameters()))
    privacy = privacy_summary(hooks.privacy_records())
    write_json(run_dir / "privacy.json", privacy)
    write_json(run_dir / "sites.json", [
        {"index": i, "name": s.name, "train_tiles": len(s.train), "test_tiles": len(s.test), "info": s.info}
        for i, s in enumerate(sites)
    ])

    final = result.rounds[-1]
    summary = {
        "run_dir": str(run_dir),
        "config_hash": config_hash(config),
        "rounds": config.train.rounds,
        "dice": final.pooled["dice"],
        "jaccard": final.pooled["jaccard"],
        "accuracy": final.pooled["accuracy"],
        "sites": {row["site"]: {k: row[k] for k in ("dice", "jaccard", "accuracy")}
                  for row in final.evaluation},
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
    write_manifest(run_dir, config, device=device, started=started, status="complete",
                   extra={"model_parameters": summary["model_parameters"], "privacy": summary["privacy"]})
    return TrainResult(run_dir, summary, reused=False)
