"""Privacy–utility sweeps: the grid, its points, the sweep folder, and the executors that run them.

A sweep crosses defenses × noise levels × seeds × local batch sizes × local steps × attacks × target
sites. Each combination is a *point*, keyed by the hash of its resolved config (training and attack
settings together). The undefended reference (``none``, σ = 0) is always part of the grid: utility
changes and leakage are read against it.

- :mod:`.grid`: the ``[sweep]`` table (:class:`SweepSpec`), checked and loaded.
- :mod:`.points`: the grid's points and the training runs they share.
- :mod:`.folder`: the resumable sweep folder (layout in its docstring), tables rebuilt from rows.
- :mod:`.executors`: the process pool (default) and Ray, running the same point function.

Nothing here imports torch (or Ray); :func:`feddp_eval.pipeline.run_sweep` does the work.
"""

from feddp_eval.sweep.folder import (
    FORMAT,
    RESULTS_FILE,
    RUNTIME_FILE,
    SWEEP_FILE,
    check_sweep_dir,
    finished_rows,
    point_dir,
    stage_seconds,
    sweep_manifest,
    unplanned_points,
    write_tables,
)
from feddp_eval.sweep.grid import (
    DEFAULT_NOISES,
    EXECUTORS,
    MAX_SEEDS,
    SweepSpec,
    load_sweep_config,
    validate_spec,
)
from feddp_eval.sweep.points import (
    TRAINING_AXES,
    UTILITY_ONLY,
    SweepPoint,
    group_by_run,
    longest_first,
    plan,
    point_key,
    swept_axes,
)

__all__ = [
    "DEFAULT_NOISES",
    "EXECUTORS",
    "FORMAT",
    "MAX_SEEDS",
    "RESULTS_FILE",
    "RUNTIME_FILE",
    "SWEEP_FILE",
    "TRAINING_AXES",
    "UTILITY_ONLY",
    "SweepPoint",
    "SweepSpec",
    "check_sweep_dir",
    "finished_rows",
    "group_by_run",
    "load_sweep_config",
    "longest_first",
    "plan",
    "point_dir",
    "point_key",
    "stage_seconds",
    "sweep_manifest",
    "swept_axes",
    "unplanned_points",
    "validate_spec",
    "write_tables",
]
