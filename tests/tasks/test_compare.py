"""`rarl compare` end to end on the tiny model, as DVC runs it: one seed, two GRPO steps per variant, 24 questions
per set, in a copy of the project.

The comparison is run the way a user's would go: `dvc repro compare/dvc.yaml` is killed (SIGKILL to its process
group) while the SFT control trains, then run again. The tests assert what a user relies on: DVC re-ran only what
was not finished (the GRPO units and the warm-up's evaluation were not redone), every model was trained and
evaluated, the control stopped on its token budget, the three claims were read under each prompt, the report files
were written, and MLflow holds one comparison run with a nested run per model x seed (training curves, eval
metrics, predictions). Adding a seed plans only that seed's units.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from rarl_core.compare import CONTROL, REFUTED, SFT, SUPPORTED, UNRESOLVED
from rarl_core.config import load_config
from tests.conftest import SMALL, copy_project, small_params, venv_env

pytestmark = pytest.mark.slow
COMPARE = {"seeds": [0], "control": "tokens", "judge": True}
GRPO = {"max_steps": 2, "batch_size": 8, "num_generations": 4, "max_completion_length": 24, "logging_steps": 1}


def dvc(root: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(venv_env()["PATH"].split(os.pathsep)[0]) / "dvc"), *args], cwd=root,
                          env={**venv_env(), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, **kwargs)


def runs_of(root: Path, out: str) -> list[str]:
    """The stages DVC ran, in order, from its log."""
    return [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> dict:
    root = copy_project(tmp_path_factory.mktemp("compare"))
    small_params(root, absolute_paths=False, compare=COMPARE, grpo=GRPO,
                 evaluate={**SMALL["evaluate"], "image_controls": ["blank"]})
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "small"], cwd=root,
                   check=True)
    log = root / "first.log"
    with log.open("w") as handle:
        first = subprocess.Popen([str(Path(venv_env()["PATH"].split(os.pathsep)[0]) / "dvc"), "repro",
                                  "compare/dvc.yaml"], cwd=root, env={**venv_env(), "OMP_NUM_THREADS": "1"},
                                 stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 900
        while "Running stage 'compare/dvc.yaml:compare_control@0'" not in log.read_text():
            assert first.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(3)  # inside the control's training
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    second = dvc(root, "repro", "compare/dvc.yaml", timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return {"root": root, "first": runs_of(root, log.read_text()), "second": runs_of(root, second.stdout),
            "cfg": load_config(root / "params.yaml")}


def test_a_killed_comparison_reruns_only_what_was_not_finished(compared):
    assert compared["first"][:4] == ["prepare", "augment", "tiny_model", "sft"]
    finished = {"compare/dvc.yaml:compare_grpo@rl-0", "compare/dvc.yaml:compare_grpo@rarl-0"}
    assert finished <= set(compared["first"])
    assert not finished & set(compared["second"]), "a finished GRPO unit was trained again"
    assert compared["second"][0] == "compare/dvc.yaml:compare_control@0"
    assert compared["second"][-1] == "compare/dvc.yaml:compare"
    assert dvc(compared["root"], "status", "--json", "compare/dvc.yaml").stdout.strip() == "{}"


def test_the_comparison_trains_evaluates_and_reports(compared):
    cfg = compared["cfg"]
    out = compared["root"] / cfg.paths.compare
    results = json.loads((out / "results.json").read_text())
    assert [(u["model"], u["seed"]) for u in results["units"]] == [(SFT, None), ("rl", 0), ("rarl", 0), (CONTROL, 0)]
    rl, rarl, control = results["units"][1:]
    assert control["train"]["budget"] == {"tokens": (rl["train"]["tokens"] + rarl["train"]["tokens"]) // 2}
    assert control["train"]["tokens"] >= control["train"]["budget"]["tokens"] > 0 and control["train"]["steps"] >= 1
    assert "rewards/reasoning_reward/mean" in rarl["train"]["curves"]
    assert len(rl["cells"]["starter_b"]["reasoning"]["scores"]) == cfg.evaluate.max_questions
    claims = {(c["key"], c["prompt"]) for c in results["claims"]}
    assert claims == {(k, p) for k in ("rarl_vs_sft_in_domain", "rarl_vs_sft_unseen", "rarl_vs_rl_unseen")
                      for p in ("plain", "reasoning")}
    assert {c["verdict"] for c in results["claims"]} <= {SUPPORTED, REFUTED, UNRESOLVED}
    blank = results["image_controls"]["starter_b"]["reasoning"]["rl"]["blank"]
    assert blank["ci_low"] <= blank["mean"] <= blank["ci_high"] and set(blank["reliance"]) == {"diff", "ci_low", "ci_high"}
    diagnostics = results["diagnostics"][CONTROL]["starter_a"]["reasoning"]
    assert diagnostics["format_rate"] is not None and diagnostics["judge_reasoning"] is not None
    assert results["wall_time_s"] > results["train_seconds"] > 0
    assert (out / "compare.md").read_text().startswith("# Does RARL beat RL and SFT?")
    assert "data:image/png;base64," in (out / "compare.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["claims"]["rarl_vs_rl_unseen/reasoning"]["verdict"]
    assert (compared["root"] / cfg.paths.compare / "grpo" / "seed-0" / "rl" / "weights" / "adapter_config.json").is_file()


def test_mlflow_holds_one_comparison_run_with_a_run_per_unit(compared):
    cfg = compared["cfg"]
    mlflow.set_tracking_uri(f"sqlite:///{compared['root'] / 'mlflow' / 'mlflow.db'}")
    (parent,) = mlflow.search_runs(experiment_names=[cfg.mlflow.experiment], output_format="list",
                                   filter_string="tags.`rarl.kind` = 'comparison'")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["verdict/rarl_vs_rl_unseen/reasoning"] in {SUPPORTED, REFUTED, UNRESOLVED}
    children = mlflow.search_runs(experiment_names=[cfg.mlflow.experiment], output_format="list",
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    by_name = {run.info.run_name: run for run in children}
    assert sorted(by_name) == ["rarl seed 0", "rl seed 0", "sft", "sft_control seed 0"]  # the killed run continued
    assert "train/reward" in by_name["rl seed 0"].data.metrics
    assert "eval/starter_b/reasoning/consistency_rate" in by_name["sft_control seed 0"].data.metrics
    client = mlflow.MlflowClient()
    assert {a.path for a in client.list_artifacts(by_name["rarl seed 0"].info.run_id, "predictions")} == {
        "predictions/starter_a", "predictions/starter_b"}
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "compare")} >= {"compare/compare.html"}


def test_a_new_seed_plans_only_its_own_units(compared):
    root = compared["root"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["compare"]["seeds"] = [0, 1]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        changed = json.loads(dvc(root, "status", "--json", "compare/dvc.yaml").stdout)
    finally:
        subprocess.run(["git", "checkout", "-q", "params.yaml"], cwd=root, check=True)
    assert set(changed) == {"compare/dvc.yaml:compare_grpo@rl-1", "compare/dvc.yaml:compare_grpo@rarl-1",
                            "compare/dvc.yaml:compare_control@1", "compare/dvc.yaml:compare_eval_grpo@rl-1",
                            "compare/dvc.yaml:compare_eval_grpo@rarl-1", "compare/dvc.yaml:compare_eval_control@1",
                            "compare/dvc.yaml:compare"}


def test_compare_needs_rl_and_rarl(compared, capsys, monkeypatch):
    from tasks import compare_grpo

    root = compared["root"]
    monkeypatch.chdir(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["grpo"]["variants"] = {"rl": {"format": 1.0, "accuracy": 1.0}}
    path = root / "only-rl.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    assert compare_grpo.main(["--params", str(path), "--variant", "rl", "--seed", "0", "--out", str(root / "x")]) == 1
    assert "grpo.variants lacks ['rarl']" in capsys.readouterr().err
