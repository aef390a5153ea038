"""One results row as a typed value: a field per column of :mod:`feddp_eval.schema`, in schema order.

The attack and sweep workflows build a :class:`ResultRow` from the cells each stage measures
(:mod:`feddp_eval.workflows.rows`); :meth:`ResultRow.as_dict` gives the mapping that ``results.json``,
``scores.json``, a sweep point's ``row.json`` and ``results.csv`` are written from. A row read back
from those files stays a plain mapping (its cells are read by column name).

``tests/test_result_row.py`` holds the fields equal to the schema's columns, so a column added to
:data:`~feddp_eval.schema.COLUMNS` without its field here (or the other way round) fails a test.
Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar


@dataclass(frozen=True)
class ResultRow:
    """The cells of one results row (see :data:`feddp_eval.schema.COLUMNS` for each column's meaning,
    unit and range); ``None``: not measured.

    A row *holds* the columns its workflow filled in, ``None`` included: an honest attack's row holds
    no ``tiles_alone``, the ``attack`` command's rows no sweep ``key``. :meth:`as_dict` gives the
    held columns alone, so every file is written with the keys it had before rows were typed. A row
    built by :meth:`of` holds the keys it was given; one built by the constructor holds every column.
    """

    _held: ClassVar[tuple[str, ...] | None] = None  # per instance, set by of(); None: every column

    key: str | None = None
    config_hash: str | None = None
    seed: int | None = None
    defense: str | None = None
    noise: float | None = None
    epsilon: float | None = None
    delta: float | None = None
    granularity: str | None = None
    accountant: str | None = None
    epsilon_lower_bound: float | None = None
    audit_canaries: int | None = None
    audit_guesses: int | None = None
    audit_correct: int | None = None
    audit_violated: int | None = None
    dice: float | None = None
    jaccard: float | None = None
    accuracy: float | None = None
    otsu_dice: float | None = None
    utility_seeds: int | None = None
    dice_mean: float | None = None
    delta_dice: float | None = None
    delta_dice_low: float | None = None
    delta_dice_high: float | None = None
    delta_dice_verdict: str | None = None
    psnr: float | None = None
    psnr_median: float | None = None
    share_30db: float | None = None
    share_40db: float | None = None
    ssim: float | None = None
    lpips: float | None = None
    mask_dice: float | None = None
    prior_psnr: float | None = None
    prior_ssim: float | None = None
    prior_lpips: float | None = None
    prior_mask_dice: float | None = None
    flat_mask_dice: float | None = None
    mask_prior_psnr: float | None = None
    mask_prior_ssim: float | None = None
    mask_prior_lpips: float | None = None
    own_guess_psnr: float | None = None
    own_guess_ssim: float | None = None
    margin_psnr: float | None = None
    margin_ssim: float | None = None
    prior_kind: str | None = None
    tiles_beating_prior: int | None = None
    tiles_exact: int | None = None
    tiles_alone: int | None = None
    tiles_read: int | None = None
    threat: str | None = None
    attack: str | None = None
    target_site: int | None = None
    target_round: int | str | None = None
    batch_size: int | None = None
    local_steps: int | None = None
    rounds_used: int | None = None
    restarts: int | None = None
    mask: str | None = None
    iterations: int | None = None
    stopped: str | None = None
    objective: float | None = None
    lpips_missing: str | None = None
    run_dir: str | None = None
    tiles: str | None = None
    train_seconds: float | None = None
    seconds: float | None = None

    @classmethod
    def of(cls, cells: Mapping[str, Any]) -> ResultRow:
        """The row holding ``cells`` (column name → value); a ``KeyError`` names a key that is no column."""
        known = column_names()
        if unknown := [k for k in cells if k not in known]:
            raise KeyError(f"no results column {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
        row = cls(**cells)
        object.__setattr__(row, "_held", tuple(k for k in known if k in cells))
        return row

    def with_cells(self, **cells: Any) -> ResultRow:
        """This row with ``cells`` set (and held) on top."""
        return ResultRow.of({**self.as_dict(), **cells})

    def value(self, name: str) -> Any:
        """The cell of column ``name`` (``None`` when not held); for code that picks columns by name."""
        if name not in column_names():
            raise KeyError(f"no results column {name!r}; known: {', '.join(column_names())}")
        return getattr(self, name)

    def as_dict(self) -> dict[str, Any]:
        """The held columns and their cells, in schema order: what the result files are written from."""
        held = self._held if self._held is not None else column_names()
        return {name: getattr(self, name) for name in held}


_NAMES = tuple(f.name for f in fields(ResultRow))


def column_names() -> tuple[str, ...]:
    """The columns a :class:`ResultRow` carries: its fields, in schema order."""
    return _NAMES
