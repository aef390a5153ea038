"""ResultRow: a field per schema column, in order; its mapping is what the result files are written from."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from feddp_eval import schema
from feddp_eval.io import read_csv, write_csv
from feddp_eval.result_row import ResultRow, column_names

HONEST = {"defense": "dp-sgd", "noise": 1.1, "epsilon": 5.36, "delta": 1e-5, "dice": 0.18, "mask_dice": None}


def test_the_fields_are_the_schema_columns_in_order() -> None:
    assert [f.name for f in fields(ResultRow)] == [c.name for c in schema.COLUMNS]
    assert column_names() == tuple(c.name for c in schema.COLUMNS)


def test_a_row_holds_the_cells_it_was_given_none_included() -> None:
    row = ResultRow.of(HONEST)
    assert row.as_dict() == HONEST  # no tiles_alone, no sweep key: absent, not null
    assert row.dice == 0.18 and row.mask_dice is None and row.tiles_alone is None
    assert row.value("epsilon") == 5.36
    more = row.with_cells(utility_seeds=3, delta_dice=None)
    assert more.as_dict() == {**HONEST, "utility_seeds": 3, "delta_dice": None}
    assert list(more.as_dict()) == [n for n in column_names() if n in more.as_dict()]  # schema order
    assert row.as_dict() == HONEST  # with_cells made a new row
    assert ResultRow(dice=0.5).as_dict() == dict.fromkeys(column_names()) | {"dice": 0.5}


def test_a_key_that_is_no_column_is_refused() -> None:
    with pytest.raises(KeyError, match="no results column 'psnr_db'"):
        ResultRow.of({"psnr_db": 30.0})
    with pytest.raises(KeyError, match="no results column 'psnr_db'"):
        ResultRow.of(HONEST).value("psnr_db")


def test_golden_json_and_csv_of_a_row(tmp_path) -> None:
    row = ResultRow.of({**HONEST, "seed": 3, "target_round": "all", "stopped": "budget"})
    golden = (
        '{"defense": "dp-sgd", "delta": 1e-05, "dice": 0.18, "epsilon": 5.36, "mask_dice": null, '
        '"noise": 1.1, "seed": 3, "stopped": "budget", "target_round": "all"}'
    )
    assert json.dumps(row.as_dict(), sort_keys=True) == golden
    header = schema.result_columns()
    write_csv(tmp_path / "results.csv", [row.as_dict()], header)
    (back,) = read_csv(tmp_path / "results.csv")
    assert {k: v for k, v in back.items() if v} == {
        "seed": "3",
        "defense": "dp-sgd",
        "noise": "1.1",
        "epsilon": "5.36",
        "delta": "1e-05",
        "dice": "0.18",
        "target_round": "all",
        "stopped": "budget",
    }
