"""``feddp-eval attack``: train (or reuse) the defended run and the undefended reference, attack both."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from feddp_eval import schema
from feddp_eval.config import ExperimentConfig, reference_config, with_overrides
from feddp_eval.errors import ConfigError
from feddp_eval.io import write_json
from feddp_eval.result_row import ResultRow
from feddp_eval.rundir.names import RESULTS, attack_dir_name, run_key
from feddp_eval.sweep.executors.pool import ignore_interrupts, stop_workers, terminate_as_interrupt
from feddp_eval.workflows.attack_run import (
    AttackOutcome,
    attack_run,
    attack_settings,
    public_folder_tiles,
    target_site,
)
from feddp_eval.workflows.train import run_train


@dataclass(frozen=True)
class AttackResult:
    """Outcome of :func:`run_attack`: one row per arm, and where everything was written."""

    out_dir: Path
    rows: list[ResultRow]
    scenario: dict[str, Any]
    grid: Path | None

    def to_json(self) -> dict[str, Any]:
        return {"run_dir": str(self.out_dir), "scenario": self.scenario, "rows": self.row_dicts()}

    def row_dicts(self) -> list[dict[str, Any]]:
        """The rows as ``results.json`` holds them (what the gate reads)."""
        return [row.as_dict() for row in self.rows]


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
    arms = ([reference_arm(config)] if reference and config.defense.name != "none" else []) + [config]
    results_dir = out / attack_dir_name(config)
    outcomes: dict[int, AttackOutcome] = {}
    with UtilitySeeds(arms, config.attack.utility_seeds, out) as utility:  # the worker starts first
        if on_stage and utility.pending:
            on_stage(utility.describe())
        lpips = LPIPSMetric(config.attack.lpips_net)  # loads backbone weights once for this process
        for i, arm in enumerate(arms):
            if utility.attacks_ahead(i):
                continue  # a worker trains and attacks it
            label = _arm_label(arm)
            if on_stage:
                on_stage(f"training [{label}]")
            trained = run_train(arm, run_dir=out / run_key(arm))
            if on_stage:
                on_stage(f"attacking [{label}]")
            outcomes[i] = attack_run(arm, trained, lpips, on_iteration=on_iteration)
        utility.train_queued_here(on_stage)
        for i, arm in enumerate(arms):
            if utility.attacks_ahead(i):
                if on_stage:
                    on_stage(f"waiting for the worker to train and attack [{_arm_label(arm)}]")
                outcomes[i] = utility.outcome(i)
        if on_stage and utility.pending:
            on_stage("waiting for the seed runs")
        ordered = [outcomes[i] for i in range(len(arms))]
        dice = utility.dice([_dice(o.row) for o in ordered])
    rows = [o.row.with_cells(**cells) for o, cells in zip(ordered, delta_dice_cells(dice), strict=True)]
    # The first arm's update sets the scenario; a Poisson-sampled (DP-SGD) arm may have drawn
    # another batch of the same site, so each arm's tile count is kept beside it.
    scenario = {**ordered[0].scenario, "tiles_by_arm": [len(o.truth) for o in ordered]}
    if len(arms) > 1 and arms[0].train.sampling != config.train.sampling:
        scenario["paired_batches"] = True  # the reference Poisson-sampled for the pairing alone
    write_json(results_dir / RESULTS, {"scenario": scenario, "rows": [row.as_dict() for row in rows]})
    from feddp_eval.viz import save_comparison_grid

    panels = [("prior", o.truth, o.guess) for o in ordered]
    panels += [(_label(o.row), o.truth, o.reconstruction) for o in ordered]
    grid = save_comparison_grid(results_dir / "reconstructions.png", panels)
    return AttackResult(results_dir, rows, scenario, grid)


def reference_arm(config: ExperimentConfig) -> ExperimentConfig:
    """The undefended arm of ``config`` (:func:`~feddp_eval.config.reference_config`); with
    ``attack.paired_batches`` and a defended arm that Poisson-samples, its clients Poisson-sample too
    (``train.sampling = "poisson"``). Batches are drawn from the seed, the round and the client alone,
    so both arms then train every client on the same tiles in every round. A defended arm that does
    not Poisson-sample already draws the reference's batches, and the reference stays as it is."""
    from defenses import build_defense
    from feddp_eval.federated.client import draws_poisson

    arm = reference_config(config)
    if config.attack.paired_batches and draws_poisson(
        config.train, build_defense(config.defense).poisson_sampling
    ):
        arm = with_overrides(arm, {"train.sampling": "poisson"})
    return arm


def _dice(row: ResultRow) -> float:
    assert row.dice is not None, "training_columns fills in the run's pooled Dice"
    return row.dice


def _label(row: ResultRow) -> str:
    return schema.setting_label(str(row.defense), row.noise)


def _arm_label(arm: ExperimentConfig) -> str:
    return schema.setting_label(arm.defense.name, arm.defense.noise)


class UtilitySeeds:
    """Trains every arm at the extra seeds ``seed + 1 … seed + n - 1`` in worker processes, while the
    first seed trains and is attacked in this one, so utility gets paired seeds for little wall time.

    A worker first trains *and attacks* the attacked seed of every arm after the first (the defended
    arm), while this process trains and attacks the undefended reference. The seed runs wait in a
    queue of this process's and go to a worker only when one is free; when this process is done with
    its arm it trains the last queued one here, one at a time, so both cores stay busy until the last
    run (issue #23). Which process trains or attacks a run changes no number: each computes with one
    thread, as this one does while the workers run.

    Worker processes compute with one thread each, and while they run this process gives up as many of
    its threads (one of two on a 2-core machine): OpenMP threads that share a core with a busy worker
    spin at every barrier, which made the headline 3× slower. Each seed run is a training run in
    ``<out>/<config hash>`` that skips what only an attacked run needs (:func:`seed_run_config`),
    reused when finished.
    """

    def __init__(self, arms: list[ExperimentConfig], n: int, out: Path) -> None:
        self.extra = [[seed_run_config(arm, arm.seed + i) for i in range(1, n)] for arm in arms]
        # With no seed runs there is no worker: the arms then run here, one after the other, on every
        # thread (two 1-thread processes beat one 2-thread process only when there is work for both).
        self.ahead = arms[1:] if n > 1 else []
        self.out = out
        # Each seed run's Dice, resolved by whichever process trains it.
        self.seeds: list[list[Future[float]]] = [[Future() for _ in configs] for configs in self.extra]
        self.queue = [(arm, j) for arm, configs in enumerate(self.extra) for j in range(len(configs))]
        self.ahead_futures: list[Future[AttackOutcome]] = []
        self.pool: Any = None
        self.workers = 0
        self.busy = 0  # runs handed to the pool and not finished
        self.lock = threading.RLock()  # a callback on an already finished run re-enters _feed
        self.stops = ExitStack()
        self.threads = 0  # this process's thread count before the workers started
        self.here_threads = 0  # and while they run

    @property
    def pending(self) -> int:
        """Runs not finished yet: the extra seeds, and the later arms' attacked seed."""
        running: list[Future[Any]] = [*self.ahead_futures, *(f for fs in self.seeds for f in fs)]
        return sum(not f.done() for f in running)

    def describe(self) -> str:
        """The stage line for what the workers do."""
        extra = sum(len(configs) for configs in self.extra)
        ahead = "".join(f"trains and attacks [{_arm_label(arm)}]; " for arm in self.ahead)
        return f"a worker process {ahead}{extra} more seed run(s) for ΔDice train there and here"

    def attacks_ahead(self, arm: int) -> bool:
        """Whether a worker trains and attacks arm ``arm``'s attacked seed."""
        return 0 < arm <= len(self.ahead_futures)

    def outcome(self, arm: int) -> AttackOutcome:
        """The attack a worker ran on arm ``arm`` (waits for it); its error, if it failed, is raised here."""
        return self.ahead_futures[arm - 1].result()

    def _feed(self, done: Future[Any] | None = None) -> None:
        """Hand queued seed runs to the pool while a worker is free (called again as each run ends,
        from the pool's thread), first queued first."""
        with self.lock:
            if done is not None:
                self.busy -= 1
            while self.queue and self.busy < self.workers:
                arm, j = self.queue.pop(0)
                config = self.extra[arm][j]
                try:
                    future = self.pool.submit(train_for_dice, config, self.out / run_key(config))
                except RuntimeError:  # the pool is shutting down: nothing more to hand out
                    self.queue.clear()
                    return
                self.busy += 1
                future.add_done_callback(partial(_settle, self.seeds[arm][j]))
                future.add_done_callback(self._feed)

    def train_queued_here(self, on_stage: Callable[[str], None] | None) -> None:
        """Train in this process, one at a time, the seed runs still queued (last queued first), so this
        process does not sit idle while the workers still have work waiting."""
        import torch

        while True:
            with self.lock:
                if not self.queue:
                    return
                arm, j = self.queue.pop()
            config = self.extra[arm][j]
            if on_stage:
                on_stage(f"training seed {config.seed} of [{_arm_label(config)}] here, for ΔDice")
            try:
                self.seeds[arm][j].set_result(train_for_dice(config, self.out / run_key(config)))
            finally:
                torch.set_num_threads(self.here_threads)  # train_for_dice computes with one

    def __enter__(self) -> UtilitySeeds:
        if self.ahead or self.queue:
            import multiprocessing
            import os
            from concurrent.futures import ProcessPoolExecutor

            import torch

            self.workers = max(1, min(len(self.ahead) + len(self.queue), (os.cpu_count() or 2) - 1))
            self.threads = torch.get_num_threads()
            self.here_threads = max(1, self.threads - self.workers)
            torch.set_num_threads(self.here_threads)
            context = multiprocessing.get_context("spawn")
            self.stops.enter_context(terminate_as_interrupt())  # `kill PID` stops the workers too
            self.pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=ignore_interrupts)
            with self.lock:
                for config in self.ahead:
                    future = self.pool.submit(train_and_attack, config, self.out / run_key(config))
                    self.ahead_futures.append(future)
                    self.busy += 1
                    future.add_done_callback(self._feed)
            self._feed()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            import torch

            with self.lock:
                self.queue.clear()  # nothing more goes to the workers
            if exc[0] is not None:  # stopped or failed: end the workers' runs now, not after them
                stop_workers(self.pool)
            else:
                self.pool.shutdown()
            torch.set_num_threads(self.threads)
        self.stops.close()

    def dice(self, first: list[float]) -> list[list[float]]:
        """Each arm's pooled Dice per seed, the attacked first seed's (``first``) leading."""
        return [[d, *(f.result() for f in futures)] for d, futures in zip(first, self.seeds, strict=True)]


def seed_run_config(arm: ExperimentConfig, seed: int) -> ExperimentConfig:
    """The config of ``arm``'s seed run at ``seed``, trained for its Dice alone: evaluated after the last
    round only, and without captures unless the run is audited (the audit reads them). Its final
    weights and numbers are those of the ordinary run at that seed; it lives under its own hash."""
    from feddp_eval.config import with_overrides

    utility_only: dict[str, Any] = {"seed": seed, "train.evaluate": "final"}
    if not arm.train.audit:
        utility_only["capture"] = False
    return with_overrides(arm, utility_only)


def _settle(slot: Future[float], done: Future[float]) -> None:
    """Copy a worker's result (or error) into the seed run's own future."""
    if done.cancelled():
        slot.cancel()
    elif (error := done.exception()) is not None:
        slot.set_exception(error)
    else:
        slot.set_result(done.result())


def train_for_dice(config: ExperimentConfig, run_dir: Path) -> float:
    """A seed run for ΔDice, trained with one thread (in a worker or here); its pooled held-out Dice."""
    import torch

    torch.set_num_threads(1)
    return float(run_train(config, run_dir=run_dir).summary.dice)


def train_and_attack(config: ExperimentConfig, run_dir: Path) -> AttackOutcome:
    """A worker's arm: train (or reuse) it and attack it, with one thread and the worker's own LPIPS."""
    import torch

    from feddp_eval.metrics.perceptual import LPIPSMetric

    torch.set_num_threads(1)
    trained = run_train(config, run_dir=run_dir)
    return attack_run(config, trained, LPIPSMetric(config.attack.lpips_net))


def delta_dice_cells(dice: list[list[float]]) -> list[dict[str, Any]]:
    """The utility-over-seeds columns of each arm's row: mean Dice over its seeds and, for a defended arm
    after the undefended reference (the first arm), its paired ΔDice with the 95% interval."""
    from feddp_eval.metrics.significance import paired_relative_delta

    cells = []
    for i, values in enumerate(dice):
        row: dict[str, Any] = {"utility_seeds": len(values), "dice_mean": sum(values) / len(values)}
        row |= dict.fromkeys(("delta_dice", "delta_dice_low", "delta_dice_high", "delta_dice_verdict"))
        if i > 0 and all(d > 0 for d in dice[0]):
            delta = paired_relative_delta(values, dice[0])
            row |= {
                "delta_dice": delta.mean,
                "delta_dice_low": delta.low,
                "delta_dice_high": delta.high,
                "delta_dice_verdict": delta.verdict,
            }
        cells.append(row)
    return cells


def preflight_attack(config: ExperimentConfig) -> None:
    """Refuse an unknown attack or a target site the run will not have, before any training."""
    from attacks import ATTACKS
    from feddp_eval.federated.loop import sampling_problem

    ATTACKS.get(config.attack.name)  # an unknown name is a ConfigError listing the known ones
    if (problem := target_problem(config) or sampling_problem(config) or public_problem(config)) is not None:
        raise ConfigError(problem)


def public_problem(config: ExperimentConfig) -> str | None:
    """Why an attack that learns from public tiles cannot run on this experiment (checked before any
    training): it needs public tiles (the synthetic generator's, or a folder of the
    server's own that shares nothing with the clients' data and holds enough tiles), and one tile
    per round at the attacked site."""
    from attacks import ATTACKS

    a = config.attack
    attack = ATTACKS.create(a.name, **attack_settings(a))
    wanted = attack.public_tiles_wanted()
    if not wanted:
        return None
    if (problem := public_memory_problem(config, wanted)) is not None:
        return f"{a.name}'s public tiles: {problem}"
    folder, synthetic = attack.public_source(), config.data.source == "synthetic"
    if folder:
        if (problem := public_folder_problem(config, folder, wanted)) is not None:
            return f"{a.name}'s public tiles: {problem}"
    elif not synthetic:
        return (
            f"{a.name} learns from public tiles of the site's look; on a folder (`--data`) they must "
            "come from a folder the server holds, none of them a client's: `--attack-option "
            "public_data=DIR` (images/ + masks/, as `--data` reads them)"
        )
    t = config.train
    if t.batch_size == 1 and t.local_steps == 1:
        return poisson_draw_problem(config) if synthetic else None
    if not synthetic:  # a folder's site sizes are only known once its tiles are cut
        return (
            f"{a.name} maps a one-tile update to that tile, and a folder's site sizes are read at "
            "training: attack one tile per round (`--batch-size 1 --local-steps 1`)"
        )
    tiles = _planned_tiles(config)[1]
    if tiles > 1:
        return (
            f"{a.name} maps a one-tile update to that tile, but the attacked site trains on {tiles} "
            "tiles a round: attack a site with one training tile (`[data] train_tiles`), or one tile "
            "per round (`--batch-size 1 --local-steps 1`)"
        )
    return None


def _planned_tiles(config: ExperimentConfig) -> tuple[int, int]:
    """The attacked site of a synthetic experiment and its training tiles, known before training."""
    planned = config.data.train_tiles
    counts = [planned] * config.data.sites if isinstance(planned, int) else list(planned)
    site = target_site(config, [{"index": i, "train_tiles": c} for i, c in enumerate(counts)])
    return site, counts[site]


def poisson_draw_problem(config: ExperimentConfig) -> str | None:
    """Why a one-tile-a-round attack finds no one-tile update in the target round of a synthetic
    experiment whose clients Poisson-sample (dp-sgd): a client's draws come from the seed, the round
    and the client alone (:func:`~feddp_eval.federated.client.round_schedule`), so how many tiles the
    target round draws is known before training. ``None`` where it draws one, or does not
    Poisson-sample, or attacks several rounds."""
    from defenses import build_defense
    from feddp_eval.federated.client import draws_poisson, round_schedule

    t, a = config.train, config.attack
    poisson = draws_poisson(t, build_defense(config.defense).poisson_sampling)
    if not poisson or not isinstance(a.target_round, int):
        return None
    site, tiles = _planned_tiles(config)

    def drawn(round_index: int) -> int:
        draw = round_schedule(tiles, t, seed=config.seed, round_index=round_index, client=site, poisson=True)
        return sum(map(len, draw))

    if (count := drawn(a.target_round)) == 1:
        return None
    ones = [r for r in range(1, t.rounds + 1) if drawn(r) == 1]
    way_out = f"`--target-round` {', '.join(map(str, ones))}" if ones else "none of its rounds does"
    return (
        f"{a.name} maps a one-tile update to that tile, and Poisson sampling (rate 1/{tiles}) draws "
        f"{count} tiles at site {site} in round {a.target_round} with seed {config.seed} (known before "
        f"training): attack a round that draws one ({way_out}) or another `--seed`"
    )


def public_memory_problem(config: ExperimentConfig, wanted: int) -> str | None:
    """Why ``wanted`` simulated one-tile updates cannot be held: their float32 numbers alone exceed
    the memory available now (a lower bound on what the attack needs, so it never refuses a run that
    fits); ``None`` where they fit or the available memory cannot be read."""
    from feddp_eval.models.unet import UNet, count_parameters

    available = available_memory()
    if available is None:
        return None
    numbers = count_parameters(UNet.from_config(config.model))
    need = wanted * numbers * 4
    if need <= available:
        return None
    return (
        f"one simulated update per public tile is {wanted:,} × {numbers:,} float32 numbers = "
        f"{need / 1e9:.1f} GB, more than the {available / 1e9:.1f} GB of memory available; ask for "
        f"fewer (`--attack-option public_tiles=N`, about {int(available / (numbers * 4)):,} at most)"
    )


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or ``None`` elsewhere."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def public_folder_problem(config: ExperimentConfig, folder: str, wanted: int) -> str | None:
    """Why the folder of public tiles cannot serve: it shares files with the clients' data folder,
    cannot be read, or cuts into fewer tiles than the attack wants."""
    from feddp_eval.errors import DataError

    public = Path(folder).resolve()
    if config.data.source != "synthetic":
        data = Path(config.data.source).resolve()
        if public == data or data in public.parents or public in data.parents:
            return (
                f"{folder} overlaps the clients' data folder {config.data.source}: the server would "
                "hold the clients' own tiles; give it a folder of other tiles"
            )
    try:
        public_folder_tiles(config, folder, wanted, site=0)
    except (ConfigError, DataError) as error:
        return str(error)
    return None


def target_problem(config: ExperimentConfig) -> str | None:
    """Why ``attack.target_site`` cannot name a site of this run (checked before any training)."""
    from feddp_eval.data.sites import planned_sites

    n = planned_sites(config.data)
    site = config.attack.target_site
    if n is not None and n > 0 and site >= n:
        return f"`attack.target_site` is {site} but the run has {n} sites (0..{n - 1}; -1 = the smallest)"
    return None
