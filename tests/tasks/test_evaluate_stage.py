"""The judge stage on fabricated predictions, against the local OpenAI-compatible fake server (real LiteLLM client):
every prediction file scored, summaries in judge.json and in each `eval: <model>` MLflow run, a re-run (also through
`dvc repro --force`, which deletes the stage's outputs first) makes zero judge calls, and too many failures fail the
stage with the judge's own message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from rarl_core import tracking
from rarl_core.config import load_config
from tasks import judge
from tasks.common import params_hash
from tests.conftest import copy_project, small_params, venv_env
from tests.fake_openai import FakeOpenAI, good, status

CELLS = [("sft", "starter_a", "plain"), ("sft", "starter_b", "reasoning"), ("rl", "starter_a", "plain")]


def write_predictions(folder: Path, n: int = 4) -> int:
    """n rows per cell; completions differ per cell so that every row is its own judge call."""
    for model, dataset, prompt in CELLS:
        rows = [{"id": f"{dataset}-{i}", "question": "Is there a lesion?", "answer": "no",
                 "completion": f"<think>No lesion is seen.</think><answer>no</answer> {model}/{dataset}/{prompt}/{i}"}
                for i in range(n)]
        path = folder / model / dataset / f"{prompt}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return n * len(CELLS)


def fake_judge(base_url: str) -> dict:
    return {"model": "openai/fake", "api_base": base_url, "concurrency": 4, "max_retries": 0, "backoff_s": 0.0,
            "timeout_s": 10}


@pytest.fixture()
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-judge-stage-0123456789")


def test_judge_stage_scores_logs_into_eval_runs_and_reruns_with_zero_calls(tmp_path, api_key):
    with FakeOpenAI(default=good(3, 2, "fine")) as srv:
        params = small_params(tmp_path, judge=fake_judge(srv.base_url))
        cfg = load_config(params)
        n = write_predictions(Path(cfg.paths.predictions))
        parent = tracking.parent_run_id(cfg.mlflow, params_hash(params))
        for model in ("sft", "rl"):
            with tracking.child_run(cfg.mlflow, parent, f"eval: {model}", {"rarl.stage": "evaluate", "rarl.model": model}):
                pass
        assert judge.main(["--params", str(params)]) == 0
        assert srv.count == n
        assert judge.main(["--params", str(params)]) == 0
        assert srv.count == n  # every score came from the cache
    summary = json.loads((Path(cfg.paths.metrics) / "judge.json").read_text())
    assert summary["judge"] == "openai/fake" and summary["run"] == {"calls": 0, "cache_hits": n, "files_failed": 0}
    cell = summary["models"]["sft"]["starter_b"]["reasoning"]
    assert cell["mean_correctness"] == 1.0 and cell["mean_reasoning"] == pytest.approx(2 / 3)
    assert cell["correctness_hist"] == [0, 0, 0, 4] and cell["reasoning_hist"] == [0, 0, 4, 0]
    scores = Path(cfg.paths.judge) / "rl" / "starter_a" / "plain.jsonl"
    assert [json.loads(line)["id"] for line in scores.read_text().splitlines()] == [f"starter_a-{i}" for i in range(4)]
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    (sft_run,) = mlflow.search_runs(experiment_names=[cfg.mlflow.experiment], output_format="list",
                                    filter_string="attributes.run_name = 'eval: sft'")
    assert sft_run.data.metrics["judge/starter_a/plain/correctness"] == 1.0
    assert sft_run.data.tags["rarl.judge"] == "openai/fake"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(sft_run.info.run_id, "judge")}
    assert artifacts == {"judge/starter_a", "judge/starter_b"}


def test_judge_stage_fails_over_threshold_with_the_judges_message(tmp_path, api_key, capsys):
    with FakeOpenAI(default=status(503, message="overloaded")) as srv:
        params = small_params(tmp_path, judge=fake_judge(srv.base_url))
        cfg = load_config(params)
        write_predictions(Path(cfg.paths.predictions), n=2)
        assert judge.main(["--params", str(params)]) == 1
    err = capsys.readouterr().err
    assert "error in stage judge: 3 prediction file(s) failed the judge" in err
    assert "could not be scored by openai/fake" in err and "HTTP 503" in err and "max_failure_rate=0.05" in err
    rows = [json.loads(line) for line in (Path(cfg.paths.judge) / "sft" / "starter_a" / "plain.jsonl").open()]
    assert all(r["error"] and r["correctness"] is None for r in rows)  # scores written, failures marked


def test_dvc_rerun_of_the_judge_stage_makes_zero_calls(tmp_path, api_key):
    """DVC deletes a stage's outputs before running it: the judge cache lives outside them, so it survives."""
    root = copy_project(tmp_path / "project")
    with FakeOpenAI(default=good(2, 1, "ok")) as srv:
        small_params(root, absolute_paths=False, judge=fake_judge(srv.base_url))
        n = write_predictions(root / yaml.safe_load((root / "params.yaml").read_text())["paths"]["predictions"])

        def repro(*flags: str) -> None:
            done = subprocess.run([sys.executable, "-m", "dvc", "repro", "--single-item", *flags, "judge"], cwd=root,
                                  env=venv_env(), capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr

        repro()
        assert srv.count == n
        repro("--force")
        assert srv.count == n
    summary = json.loads((root / "reports" / "metrics" / "judge.json").read_text())
    assert summary["run"]["calls"] == 0 and summary["run"]["cache_hits"] == n
    assert (root / "cache" / "judge.sqlite").is_file()
    assert (root / "reports" / "judge" / "sft" / "starter_a" / "plain.jsonl").is_file()
