"""TrainSummary: the typed summary.json, written and read back key for key as the plain dict was."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

import pytest

from feddp_eval.io import read_json, write_json
from feddp_eval.rundir.check import summary_problem
from feddp_eval.rundir.summary import OPTIONAL, REQUIRED, TrainSummary

SUMMARY = TrainSummary(
    run_dir="runs/abc",
    config_hash="ab" * 32,
    rounds=2,
    dice=0.75,
    jaccard=0.6,
    accuracy=0.9,
    sites={"site-0": {"dice": 0.7, "jaccard": 0.55, "accuracy": 0.88}, "pooled": {"dice": 0.75}},
    defense={"name": "dp-sgd", "noise_multiplier": 1.1},
    privacy={
        "epsilon": 3.5,
        "delta": 1e-5,
        "granularity": "sample-level",
        "accountant": "rdp",
        "noise_multiplier": 1.1,
        "audit": {"epsilon_lower_bound": 0.2, "text": "ε̂ = 0.2"},
    },
    epsilon=3.5,
    delta=1e-5,
    granularity="sample-level",
    warnings=("calibrated",),
    model_parameters=1234,
    reference={"name": "hematoxylin-otsu", "sites": {"pooled": {"dice": 0.4}}},
    seconds=1.5,
)

# What summary.json held for SUMMARY when the summary was a plain dict (write_json: sorted, indented).
GOLDEN = """{
  "accuracy": 0.9,
  "config_hash": "abababababababababababababababababababababababababababababababab",
  "defense": {
    "name": "dp-sgd",
    "noise_multiplier": 1.1
  },
  "delta": 1e-05,
  "dice": 0.75,
  "epsilon": 3.5,
  "granularity": "sample-level",
  "jaccard": 0.6,
  "model_parameters": 1234,
  "privacy": {
    "accountant": "rdp",
    "audit": {
      "epsilon_lower_bound": 0.2,
      "text": "\\u03b5\\u0302 = 0.2"
    },
    "delta": 1e-05,
    "epsilon": 3.5,
    "granularity": "sample-level",
    "noise_multiplier": 1.1
  },
  "reference": {
    "name": "hematoxylin-otsu",
    "sites": {
      "pooled": {
        "dice": 0.4
      }
    }
  },
  "rounds": 2,
  "run_dir": "runs/abc",
  "seconds": 1.5,
  "sites": {
    "pooled": {
      "dice": 0.75
    },
    "site-0": {
      "accuracy": 0.88,
      "dice": 0.7,
      "jaccard": 0.55
    }
  },
  "warnings": [
    "calibrated"
  ]
}
"""


def test_the_file_is_the_golden_text_and_reads_back_equal(tmp_path: Path) -> None:
    write_json(tmp_path / "summary.json", SUMMARY.to_json())
    assert (tmp_path / "summary.json").read_text(encoding="utf-8") == GOLDEN
    assert TrainSummary.from_json(read_json(tmp_path / "summary.json")) == SUMMARY


def test_every_field_is_a_key_and_the_optional_ones_are_left_out_when_unset() -> None:
    assert list(SUMMARY.to_json()) == [f.name for f in fields(TrainSummary)]
    assert set(REQUIRED) | set(OPTIONAL) == {f.name for f in fields(TrainSummary)}
    older = replace(SUMMARY, reference=None, seconds=None)  # a run from before the Otsu reference
    assert set(older.to_json()) == set(REQUIRED)
    assert TrainSummary.from_json(json.loads(json.dumps(older.to_json()))) == older
    assert older.otsu == {} and older.otsu_dice is None


def test_typed_views_of_the_privacy_record_and_the_reference() -> None:
    assert SUMMARY.defense_name == "dp-sgd" and SUMMARY.accountant == "rdp"
    assert SUMMARY.noise_multiplier == 1.1 and SUMMARY.audit == SUMMARY.privacy["audit"]
    assert SUMMARY.otsu_dice == 0.4
    none = replace(SUMMARY, privacy={"epsilon": None, "accountant": None, "noise_multiplier": None})
    assert none.accountant is None and none.noise_multiplier is None and none.audit is None


def test_a_summary_lacking_a_key_is_named_as_a_problem() -> None:
    data = SUMMARY.to_json()
    assert summary_problem(data) is None
    del data["model_parameters"], data["warnings"]
    assert summary_problem(data) == "lacks `warnings`, `model_parameters`"
    with pytest.raises(KeyError):
        TrainSummary.from_json(data)
