"""The Flower App (``flwr run``): the ServerApp and ClientApp that ``pyproject.toml`` names.

``[tool.flwr.app.components]`` points at :data:`server_app` and :data:`client_app`. Their run
config (``[tool.flwr.app.config]``, or ``flwr run --run-config``) is:

- ``config``: an experiment TOML, read by the ServerApp and by every ClientApp (``""``: defaults);
- ``out``: the run directory the ServerApp writes, captures included (an absolute path is safest:
  the ServerApp's working directory is the SuperLink's);
- ``force``: retrain when ``out`` already holds a finished run of this config.

Each SuperNode serves the site of its ``partition-id`` node config
(``flower-supernode --node-config 'partition-id=0'``). Every party builds the sites from the config:
the synthetic ones from the seed, a folder from ``data.source`` on its own disk. The ServerApp runs
``feddp-eval train``'s workflow with the ``flower`` engine on the connected SuperNodes, so ``out``
is a complete run directory.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from feddp_eval.flower.protocol import handshake

# Every ClientApp message runs in a fresh process: the handshake imports no torch, the rest on demand.

server_app = ServerApp()
client_app = ClientApp()


def experiment(run_config: Any) -> Any:
    """The experiment the run config names, on the ``flower`` engine."""
    import attacks  # noqa: F401  (installs the check of [attack.<name>] tables that validate runs)
    from feddp_eval.config import ExperimentConfig, load_config, validate, with_overrides

    path = str(run_config.get("config", ""))
    config = load_config(Path(path)) if path else validate(ExperimentConfig())
    return with_overrides(config, {"train.engine": "flower"})


@server_app.main()
def _serve(grid: Grid, context: Context) -> None:
    from feddp_eval.flower.engine import serving
    from feddp_eval.pipeline import run_train

    config = experiment(context.run_config)
    with serving(grid):
        run_train(
            config, run_dir=Path(str(context.run_config["out"])), force=bool(context.run_config.get("force"))
        )


@functools.lru_cache(maxsize=4)
def client_spec(config_path: str) -> Any:
    """Every client's shared part, rebuilt from the experiment config as the ServerApp builds it."""
    import torch

    from defenses import build_defense
    from feddp_eval.data.sites import build_sites
    from feddp_eval.federated.loop import client_plans
    from feddp_eval.flower.client import ClientSpec
    from feddp_eval.models.unet import UNet
    from feddp_eval.seeding import derive_seed
    from feddp_eval.workflows.train import resolve_device

    config = experiment({"config": config_path})
    hooks = build_defense(config.defense)
    sites = build_sites(config.data, seed=derive_seed(config.seed, "data"))
    torch.manual_seed(derive_seed(config.seed, "model-init"))
    model = UNet.from_config(config.model)
    plans = client_plans(sites, config.train)
    hooks.setup(model, plans)
    device = resolve_device(config.device)
    return ClientSpec(model, config.train, hooks, plans, config.seed, device, load_site=sites.__getitem__)


def _spec(context: Context) -> Any:
    return client_spec(str(context.run_config.get("config", "")))


@client_app.train()
def _train(msg: Message, context: Context) -> Message:
    from feddp_eval.flower.client import train

    return train(_spec(context), msg, context)


@client_app.evaluate()
def _evaluate(msg: Message, context: Context) -> Message:
    from feddp_eval.flower.client import evaluate_site

    return evaluate_site(_spec(context), msg, context)


client_app.query()(handshake)
