"""The flows' parameters and DVC output parsing, without running anything heavy."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from flows.params import EvaluateParameters, RunParameters, apply_overrides, hydra_value, set_param_args
from flows.runner import DvcRun, failure_message

REPO = Path(__file__).resolve().parents[2]


def test_overrides_are_applied_exactly_as_dvc_exp_run_applies_them(tmp_path):
    overrides = {"sft.learning_rate": 0.0005, "evaluate.prompts": ["reasoning"], "judge.api_base": None,
                 "model.name_or_path": "1e-4", "evaluate.extra_models.mine": "/models/it's mine"}
    args = apply_overrides(REPO / "params.yaml", overrides, tmp_path / "params.yaml")
    assert args[0] == "sft.learning_rate=0.0005" and args[-1].startswith("+evaluate.extra_models.mine=")
    data = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert data["sft"]["learning_rate"] == 0.0005
    assert data["evaluate"]["prompts"] == ["reasoning"]
    assert data["judge"]["api_base"] is None
    assert data["model"]["name_or_path"] == "1e-4"  # a string stays a string
    assert data["evaluate"]["extra_models"] == {"mine": "/models/it's mine"}


def test_hydra_values():
    assert hydra_value(True) == "true" and hydra_value(None) == "null" and hydra_value(3) == "3"
    assert hydra_value("a b") == "'a b'" and hydra_value([1, "x"]) == "[1, 'x']"
    assert hydra_value({"rl": {"format": 1.0}}) == "{rl: {format: 1.0}}"
    assert set_param_args({"sft.seed": 1, "new.key": 2}, {"sft": {"seed": 0}}) == ["sft.seed=1", "+new.key=2"]


@pytest.mark.parametrize("bad", [
    {"overrides": {"not a key": 1}},
    {"overrides": {"sft.learning_rate": float("nan")}},
    {"experiment": "no spaces allowed"},
    {"timeouts_s": {"sft": 0}},
    {"network_retries": -1},
    {"overides": {}},
])
def test_parameter_shapes_are_checked_by_pydantic(bad):
    with pytest.raises(ValidationError):
        RunParameters(**bad)


def test_isolation_defaults():
    assert not RunParameters().is_isolated
    assert RunParameters(overrides={"sft.seed": 1}).is_isolated
    assert RunParameters(experiment="x").is_isolated
    assert EvaluateParameters(model_path="m").is_isolated
    assert RunParameters(timeouts_s={"sft": 5}).timeout_for("sft") == 5
    assert RunParameters().timeout_for("grpo@rl") == 24 * 3600


def test_failure_message_names_the_stage_and_the_cause():
    run = DvcRun(returncode=255)
    run.tail.extend(["loading", "ValueError: every training row is longer than 16 tokens",
                     "ERROR: failed to reproduce 'sft': failed to run: python -m tasks.sft, exited with 1"])
    assert failure_message("sft", run).startswith("stage sft failed (exit 255): ValueError: every training row")
    run.tail.append("ERROR: failed to reproduce 'sft': failed to run: python -m tasks.sft, exited with -9")
    assert "killed by signal 9 (SIGKILL" in failure_message("sft", run)


def test_compare_parameters_name_the_comparison_stage():
    from pydantic import ValidationError

    from flows.params import COMPARE_STAGE, CompareParameters, stage_base

    assert stage_base("grpo@rl") == "grpo" and stage_base(COMPARE_STAGE) == "compare" and stage_base("sft") == "sft"
    assert CompareParameters(timeouts_s={"compare": 60}).timeout_for(COMPARE_STAGE) == 60
    assert CompareParameters().timeout_for(COMPARE_STAGE) == 72 * 3600
    with pytest.raises(ValidationError):
        CompareParameters(stages=["sft"])  # the comparison decides its stages: compare/dvc.yaml and what it needs
