"""The flows' parameters and DVC output parsing, without running anything heavy."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from flows.params import EvaluateParameters, RunParameters, apply_overrides, hydra_value, set_param_args
from flows.runner import DvcRun, StageOutcome, failure_message, lock_entries, outcomes_of, workspace_locks

REPO = Path(__file__).resolve().parents[2]


def test_overrides_are_applied_exactly_as_dvc_exp_run_applies_them(tmp_path):
    overrides = {"sft.learning_rate": 0.0005, "evaluate.prompts": ["plain", "reasoning"], "judge.api_base": None,
                 "model.name_or_path": "1e-4", "evaluate.extra_models.mine": "/models/it's mine"}
    args = apply_overrides(REPO / "params.yaml", overrides, tmp_path / "params.yaml")
    assert args[0] == "sft.learning_rate=0.0005" and args[-1].startswith("+evaluate.extra_models.mine=")
    data = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert data["sft"]["learning_rate"] == 0.0005
    assert data["evaluate"]["prompts"] == ["plain", "reasoning"]
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


def test_outcomes_and_failures_come_from_the_stages_records_and_dvc_lock():
    """Which stage ran, failed or was killed is read from the stages' own JSON records; a stage DVC skipped is
    unchanged when its dvc.lock entry stayed, restored (from the run cache) when it changed. No log line is parsed."""
    events = [{"stage": "prepare", "event": "start", "time": 1.0}, {"stage": "prepare", "event": "ran", "time": 3.0},
              {"stage": "sft", "event": "start", "time": 4.0},
              {"stage": "sft", "event": "failed", "time": 5.0, "message": "ValueError: every row is too long"},
              {"stage": "grpo@rl", "event": "start", "time": 6.0}]
    before = {"augment": {"md5": "a"}, "tiny_model": {"md5": "t"}}
    after = {"augment": {"md5": "a"}, "tiny_model": {"md5": "t2"}}
    planned = ["prepare", "augment", "tiny_model", "sft", "grpo@rl"]
    outcomes = outcomes_of(events, before, after, planned)
    assert {s: o.status for s, o in outcomes.items()} == {
        "prepare": "ran", "augment": "unchanged", "tiny_model": "restored", "sft": "failed", "grpo@rl": "killed"}
    assert outcomes["prepare"].seconds == 2.0
    run = DvcRun(outcomes=outcomes, returncode=1)
    assert failure_message(outcomes["sft"], run, lambda _: 60).startswith(
        "stage sft failed: ValueError: every row is too long")
    assert "killed by a signal (SIGKILL" in failure_message(outcomes["grpo@rl"], run, lambda _: 60)
    timed_out = StageOutcome("judge", "timed out")
    assert "longer than its time limit (60 s)" in failure_message(timed_out, run, lambda _: 60)
    run.tail.append("ERROR: lock file is locked")
    assert "before any stage ran: ERROR: lock file is locked" in failure_message(None, run, lambda _: 60)


def test_lock_entries_are_keyed_by_dvc_address(tmp_path):
    (tmp_path / "compare").mkdir()
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages:\n  grpo@rl:\n    cmd: x\n")
    (tmp_path / "compare" / "dvc.lock").write_text("schema: '2.0'\nstages:\n  compare_grpo@rl-0:\n    cmd: y\n")
    assert set(lock_entries(workspace_locks(tmp_path))) == {"grpo@rl", "compare/dvc.yaml:compare_grpo@rl-0"}


def test_compare_parameters_name_the_comparison_stage():
    from pydantic import ValidationError

    from flows.params import COMPARE_STAGE, CompareParameters, stage_base

    assert stage_base("grpo@rl") == "grpo" and stage_base(COMPARE_STAGE) == "compare" and stage_base("sft") == "sft"
    assert CompareParameters(timeouts_s={"compare": 60}).timeout_for(COMPARE_STAGE) == 60
    assert CompareParameters().timeout_for("compare/dvc.yaml:compare_grpo@rl-0") == 24 * 3600
    assert not CompareParameters().fan_out
    with pytest.raises(ValidationError):
        CompareParameters(stages=["sft"])  # the comparison decides its stages: compare/dvc.yaml and what it needs
