"""The `rarl` flows under Prefect's test harness, on a copy of the project with tiny params.

* the whole pipeline through the flow, in the workspace: every stage a task run through DVC (plain `dvc repro`
  afterwards has nothing to do: no second cache), one MLflow parent run with a child per stage and nothing left
  RUNNING, the report published as an artifact (its screenshot: tests/test_report_browser.py);
* a second run redoes nothing;
* parameters are validated before any work;
* two runs with different overrides at the same time (rarl/train and rarl/evaluate) are isolated DVC experiments:
  each has its own outputs and its own MLflow runs, and the workspace is untouched;
* rarl/compare runs compare/dvc.yaml after the stages it needs (found up to date), as a DVC experiment.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.flows.helpers import (SECRETS, dvc, flow_outcomes, full_run, launch_flow, mlflow_runs,
                                 prefect_records, tiny_project)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return full_run(tmp_path_factory.mktemp("shared"))


def stage_names(root: Path) -> list[str]:
    from flows.params import pipeline_stages

    return pipeline_stages(root)


def test_flow_runs_every_stage_through_dvc(run):
    root, state = run["root"], run["state"]
    assert state.is_completed(), state.message
    assert "starter_b" in state.result()  # the report, returned and published

    stages = stage_names(root)
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(stages)
    again = dvc(root, "status", "dvc.yaml")  # the root pipeline (compare/dvc.yaml is run apart)
    assert "up to date" in again.stdout, again.stdout

    records = prefect_records()
    assert {r.name for r in records["task_runs"]} >= set(stages)
    assert any(a.key == "rarl-report" for a in records["artifacts"])
    assert any(a.key == "rarl-stages" for a in records["artifacts"])

    runs = mlflow_runs(root)
    assert not [r for r in runs if r["status"] == "RUNNING"], "runs left RUNNING"
    parents = [r for r in runs if r["tags"].get("rarl.kind") == "pipeline"]
    assert len(parents) == 1 and parents[0]["status"] == "FINISHED"
    parent = parents[0]
    assert parent["tags"]["rarl.prefect.flow_run_id"] == str(state.state_details.flow_run_id)
    children = {r["name"] for r in runs if r["tags"].get("mlflow.parentRunId") == parent["id"]}
    assert {"prepare", "sft", "grpo: rl", "merge: rl", "evaluate", "report"} <= children


def test_a_second_run_redoes_nothing(run):
    from flows.params import RunParameters
    from flows.pipeline import train

    root = run["root"]
    before = [r for r in mlflow_runs(root) if r["tags"].get("rarl.stage")]
    state = train(params=RunParameters(), project_dir=str(root), return_state=True)
    os.chdir(REPO)
    assert state.is_completed(), state.message
    outcomes = flow_outcomes(state.state_details.flow_run_id)
    assert outcomes and set(outcomes.values()) == {"unchanged"}, outcomes
    after = [r for r in mlflow_runs(root) if r["tags"].get("rarl.stage")]
    assert len(after) == len(before), "a stage opened a new MLflow run: it was redone"
    assert not [r for r in mlflow_runs(root) if r["status"] == "RUNNING"], "the dropped parent run was left RUNNING"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"stages": ["sft", "tran"]}, "unknown stages ['tran']"),
        ({"overrides": {"sft.learnin_rate": 0.1}}, "unknown key sft.learnin_rate"),
        ({"overrides": {"grpo.batch_size": 3}}, "grpo.batch_size (3) must be divisible"),
        ({"overrides": {"sft.max_steps": "many"}}, "sft.max_steps must be int"),
        ({"timeouts_s": {"sfft": 10}}, "timeouts_s: unknown stages ['sfft']"),
    ],
)
def test_bad_parameters_fail_before_any_work(run, tmp_path, params, message):
    from flows.pipeline import train

    root = tiny_project(tmp_path / "p")
    state = train(params=params, project_dir=str(root), return_state=True)
    os.chdir(REPO)
    assert state.is_failed()
    assert message in str(state.message), state.message
    assert not (root / "dvc.lock").exists() and not (root / "mlflow" / "mlflow.db").exists(), "something ran"
    flow_run_id = state.state_details.flow_run_id
    assert not [t for t in prefect_records()["task_runs"] if t.flow_run_id == flow_run_id]


def test_pydantic_rejects_a_misspelt_parameter_field(run):
    from flows.pipeline import train

    state = train(params={"overides": {"sft.max_steps": 2}}, return_state=True)
    os.chdir(REPO)
    assert state.is_failed() and "overides" in str(state.message)


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        for f in sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()):
            h.update(str(f).encode() + f.read_bytes())
    return h.hexdigest()


def test_two_runs_with_different_overrides_at_once_are_isolated(run, tmp_path):
    """rarl/train with evaluate.max_questions=2 and rarl/evaluate (an extra model, max_questions=3), started
    together: two DVC experiments, each with its own outputs and MLflow runs; the workspace stays as it was."""
    root = run["root"]
    workspace = [root / "dvc.lock", root / "params.yaml", root / "reports"]
    before = _digest(workspace)
    parents_before = {r["id"] for r in mlflow_runs(root) if r["tags"].get("rarl.kind") == "pipeline"}
    a = launch_flow("train", {"experiment": "fewer-q", "overrides": {"evaluate.max_questions": 2},
                              "network_retries": 0}, root, tmp_path / "a.log", env=SECRETS)  # the judge's key
    b = launch_flow("evaluate", {"experiment": "candidate", "model_path": "models/merged/rl", "model_name": "mine",
                                 "overrides": {"evaluate.max_questions": 3}, "network_retries": 0},
                    root, tmp_path / "b.log", env=SECRETS)
    started = time.monotonic()
    codes = [a.wait(900), b.wait(900)]
    logs = [(tmp_path / n).read_text() for n in ("a.log", "b.log")]
    assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    print(f"two concurrent experiments took {time.monotonic() - started:.0f} s")

    # both recorded as DVC experiments, with exactly their own parameters
    shown = json.loads(dvc(root, "exp", "show", "--json").stdout)
    exps = {e["name"]: e for baseline in shown for e in (baseline.get("experiments") or [])
            for e in [e["revs"][0]] if e.get("name")}
    assert {"fewer-q", "candidate"} <= set(exps), list(exps)
    params_of = {n: exps[n]["data"]["params"]["params.yaml"]["data"]["evaluate"] for n in ("fewer-q", "candidate")}
    assert params_of["fewer-q"]["max_questions"] == 2 and params_of["fewer-q"]["extra_models"] == {}
    assert params_of["candidate"]["max_questions"] == 3 and "mine" in params_of["candidate"]["extra_models"]

    # each experiment's outputs are its own: the evaluation of 2 vs 3 questions, the extra model only in one
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()

    def evaluation(name: str) -> dict:
        ref = f"refs/exps/{head[:2]}/{head[2:]}/{name}:reports/metrics/eval.json"
        return json.loads(subprocess.run(["git", "show", ref], cwd=root, capture_output=True, text=True,
                                         check=True).stdout)

    fewer, cand = evaluation("fewer-q"), evaluation("candidate")
    assert {c["n"] for m in fewer["models"].values() for d in m.values() for c in d.values()} == {2}
    assert {c["n"] for m in cand["models"].values() for d in m.values() for c in d.values()} == {3}
    assert "mine" in cand["models"] and "mine" not in fewer["models"]

    # the workspace is untouched
    assert _digest(workspace) == before

    # MLflow: one parent per run, tagged with its experiment; each holds its own stage runs; nothing left RUNNING
    runs = mlflow_runs(root)
    assert not [r for r in runs if r["status"] == "RUNNING"]
    parents = {r["tags"].get("rarl.dvc_experiment"): r for r in runs
               if r["tags"].get("rarl.kind") == "pipeline" and r["id"] not in parents_before}
    assert set(parents) == {"fewer-q", "candidate"} and all(p["status"] == "FINISHED" for p in parents.values())
    for name, parent in parents.items():
        children = [r for r in runs if r["tags"].get("mlflow.parentRunId") == parent["id"]]
        assert {"evaluate", "report"} <= {r["name"] for r in children}, (name, [r["name"] for r in children])
        models = {r["tags"].get("rarl.model") for r in children if r["tags"].get("rarl.model")}
        assert ("mine" in models) == (name == "candidate"), (name, models)


def test_compare_flow_runs_the_comparison_as_an_experiment(run, tmp_path):
    """rarl/compare with overrides (a RARL variant beside TINY's RL, one seed): the data, augmentation and warm-up
    come from the workspace's run unchanged, only the comparison runs; its report is the flow's artifact, its files
    are in the experiment's commit, MLflow holds one comparison run with a nested run per model."""
    from flows.params import COMPARE_STAGE, CompareParameters, validate_against

    root = run["root"]
    overrides = {"grpo.variants.rarl": {"format": 1.0, "accuracy": 1.0, "reasoning": 1.0}, "compare.seeds": [0],
                 "evaluate.n_resamples": 100, "compare.judge": False}
    plan = validate_against(CompareParameters(overrides=overrides), root)
    units = {f"compare/dvc.yaml:{u}" for u in ("compare_grpo@rl-0", "compare_grpo@rarl-0", "compare_control@0",
                                               "compare_eval_sft", "compare_eval_grpo@rl-0", "compare_eval_grpo@rarl-0",
                                               "compare_eval_control@0")}  # the overrides' variants and seed
    assert plan["stages"][:4] == ["prepare", "augment", "tiny_model", "sft"] and plan["stages"][-1] == COMPARE_STAGE
    assert set(plan["stages"][4:-1]) == units and {s for level in plan["levels"] for s in level} == units
    assert plan["targets"] == ["compare/dvc.yaml"]

    proc = launch_flow("compare", {"experiment": "seeded", "overrides": overrides, "network_retries": 0}, root,
                       tmp_path / "c.log", env=SECRETS)
    log = (tmp_path / "c.log")
    assert proc.wait(900) == 0, log.read_text()[-4000:]
    records = prefect_records()
    (report,) = [a for a in records["artifacts"] if a.key == "rarl-compare"]
    assert "Does RARL beat RL and SFT?" in report.data
    outcomes = flow_outcomes(report.flow_run_id)
    assert outcomes.get(COMPARE_STAGE) == "ran", outcomes
    assert outcomes.get("sft") != "ran", f"the warm-up was up to date: it must not be trained again ({outcomes})"

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    summary = json.loads(subprocess.run(
        ["git", "show", f"refs/exps/{head[:2]}/{head[2:]}/seeded:reports/compare/summary.json"], cwd=root,
        capture_output=True, text=True, check=True).stdout)
    # TINY keeps the shipped prompts ([reasoning])
    assert set(summary["claims"]) >= {"rarl_vs_rl_unseen/reasoning", "rarl_vs_sft_in_domain/reasoning"}
    assert not (root / "reports" / "compare").exists(), "an isolated run leaves the workspace alone"

    runs = mlflow_runs(root)
    (comparison,) = [r for r in runs if r["tags"].get("rarl.kind") == "comparison"]
    nested = {r["tags"].get("rarl.model") for r in runs if r["tags"].get("mlflow.parentRunId") == comparison["id"]}
    assert nested == {"sft", "rl", "rarl", "sft_control"}
    assert not [r for r in runs if r["status"] == "RUNNING"]
