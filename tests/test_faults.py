"""Faults the pipeline survives, each injected for real on a tiny copy of the project.

1. A training process killed with SIGKILL mid-run (after its first checkpoint): nothing that looks finished is left
   (atomic outputs: no models/sft, DVC does not count the stage as done), the flow reports the kill, and re-running
   the flow redoes no finished stage, resumes training from the checkpoint in the same MLflow run, and leaves no
   MLflow run marked RUNNING.
2. The MLflow server unreachable at start: a clear error, naming the server, before any work; the server lost
   mid-run: the stage fails with its checkpoints intact and DVC not recording it, and the re-run once the server is
   back resumes from the checkpoint.
3. The judge endpoint refusing connections, then answering 500s, then recovering: the judge stage is retried by the
   flow and completes with every row scored, rows already scored served from the cache.
4. A stage running past its time limit is stopped, its whole process group with it, and named in the failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
import yaml

from tests.conftest import venv_env
from tests.fake_openai import FakeOpenAI, _make_handler, status
from tests.flows.helpers import (flow_outcomes, free_port, launch_flow, mlflow_runs, prefect_records,
                                 session_harness, tiny_project)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TRAINING = {"sft": {"max_steps": 40, "batch_size": 4, "logging_steps": 2, "save_steps": 4}}
SHORT_TRAINING = {"sft": {"max_steps": 16, "batch_size": 4, "logging_steps": 2, "save_steps": 4}}


@pytest.fixture(scope="module", autouse=True)
def harness():
    session_harness()
    yield
    os.chdir(REPO)


def wait_for(condition, timeout_s: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended (exit {proc.returncode}) before {what}:\n"
                                 f"{log.read_text()[-3000:] if log else ''}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:] if log else ''}")


def first_checkpoint(root: Path) -> Path | None:
    done = [p for p in (root / "checkpoints" / "sft").glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return min(done, key=lambda p: int(p.name.split("-")[1])) if done else None


def stage_processes(root: Path, stage: str) -> list[psutil.Process]:
    """Live `python -m tasks.<stage>` (or `python -m tasks.launch <stage>`) processes working in `root`."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        try:
            cmd = proc.info["cmdline"] or []
            ours = f"tasks.{stage}" in cmd or ("tasks.launch" in cmd and stage in cmd)
            if ours and proc.info["cwd"] == str(root) and proc.info["status"] != "zombie":
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_training_killed_with_sigkill_resumes_and_redoes_nothing(tmp_path):
    root = tiny_project(tmp_path / "p", **TRAINING)
    stages = ["prepare", "augment", "tiny_model", "sft"]
    log = tmp_path / "first.log"
    flow = launch_flow("train", {"stages": stages}, root, log)
    checkpoint = wait_for(lambda: first_checkpoint(root), 600, "the first SFT checkpoint", flow, log)
    victims = stage_processes(root, "sft")
    assert victims, "no sft process found"
    for proc in victims:
        proc.send_signal(signal.SIGKILL)  # the training process, as the OOM killer would
    assert flow.wait(300) == 1, log.read_text()[-3000:]
    assert "stage sft was killed" in log.read_text() and "SIGKILL" in log.read_text()  # named, with the likely cause

    # atomic outputs: nothing that looks finished, and DVC does not count the stage as done
    assert not (root / "models" / "sft").exists()
    assert not (root / "reports" / "metrics" / "sft.json").exists()
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert "sft" not in lock and {"prepare", "augment", "tiny_model"} <= set(lock)
    assert first_checkpoint(root) is not None, "the checkpoint must survive the kill"
    killed = [r for r in mlflow_runs(root) if r["tags"].get("rarl.stage") == "sft"]
    assert [r["status"] for r in killed] == ["RUNNING"], "a SIGKILLed process cannot close its run"

    # re-run the same flow: finished stages are skipped, sft resumes
    from flows.pipeline import train

    state = train(params={"stages": stages}, project_dir=str(root), return_state=True)
    os.chdir(REPO)
    assert state.is_completed(), state.message
    outcomes = flow_outcomes(state.state_details.flow_run_id)
    assert outcomes == {"prepare": "unchanged", "augment": "unchanged", "tiny_model": "unchanged", "sft": "ran"}
    assert {k: v for k, v in yaml.safe_load((root / "dvc.lock").read_text())["stages"].items() if k != "sft"} == lock

    runs = mlflow_runs(root)
    assert not [r for r in runs if r["status"] == "RUNNING"], [(r["name"], r["status"]) for r in runs]
    for stage in ("prepare", "augment", "tiny_model"):
        assert len([r for r in runs if r["tags"].get("rarl.stage") == stage]) == 1, f"{stage} was redone"
    sft_runs = [r for r in runs if r["tags"].get("rarl.stage") == "sft"]
    metrics = json.loads((root / "reports" / "metrics" / "sft.json").read_text())
    assert metrics["global_step"] == TRAINING["sft"]["max_steps"]
    # resumed from the checkpoint (rarl_core/checkpoints.py), in one continuous MLflow run
    assert metrics["resumed_from_step"] >= int(checkpoint.name.split("-")[1]), metrics
    assert [r["status"] for r in sft_runs] == ["FINISHED"] and sft_runs[0]["id"] == killed[0]["id"]
    assert not list((root / "models").glob(".sft.tmp-*")), "the killed writer's temporary folder was not cleaned"


def test_mlflow_unreachable_at_start_fails_before_any_work(tmp_path):
    port = free_port()  # nothing listens there
    root = tiny_project(tmp_path / "p")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["mlflow"]["tracking_uri"] = f"http://127.0.0.1:{port}"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "remote mlflow"],
                   cwd=root, check=True)

    started = time.monotonic()
    stage = subprocess.run([sys.executable, "-m", "tasks.prepare"], cwd=root, env=venv_env(), capture_output=True,
                           text=True, timeout=300)
    assert stage.returncode == 2
    assert f"the MLflow tracking server http://127.0.0.1:{port} is not reachable" in stage.stderr
    assert "nothing was run" in stage.stderr
    assert not (root / "data" / "prepared").exists()
    print(f"stage refused in {time.monotonic() - started:.1f} s")

    from flows.pipeline import train

    state = train(params={}, project_dir=str(root), return_state=True)
    os.chdir(REPO)
    assert state.is_failed() and "is not reachable" in str(state.message), state.message
    assert not (root / "dvc.lock").exists()
    assert not [t for t in prefect_records()["task_runs"] if t.flow_run_id == state.state_details.flow_run_id]


def start_mlflow(port: int, store: Path, log: Path) -> subprocess.Popen:
    env = {**venv_env(), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    store.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
         "--default-artifact-root", (store / "artifacts").as_uri(), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        env=env, stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)

    def healthy() -> bool:
        try:
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    wait_for(healthy, 180, "the MLflow server", proc, log)
    return proc


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


def test_mlflow_lost_mid_run_keeps_the_checkpoint_and_the_rerun_resumes(tmp_path):
    port = free_port()
    store, server_log = tmp_path / "mlflow-store", tmp_path / "mlflow.log"
    server = start_mlflow(port, store, server_log)
    root = tiny_project(tmp_path / "p", **SHORT_TRAINING)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["mlflow"]["tracking_uri"] = f"http://127.0.0.1:{port}"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**venv_env(), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    try:
        first = subprocess.run([sys.executable, "-m", "dvc", "repro", "tiny_model"], cwd=root, env=env,
                               capture_output=True, text=True, timeout=600)
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
        log = tmp_path / "sft.log"
        sft = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "--single-item", "sft"], cwd=root, env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: first_checkpoint(root), 600, "the first SFT checkpoint", sft, log)
        stop(server)  # the tracking server goes away mid-training
        assert sft.wait(600) != 0, "the stage must fail when its tracking server is gone"
        output = log.read_text()
        assert "MlflowException" in output or "Connection refused" in output or "ConnectionError" in output, output[-3000:]
        assert first_checkpoint(root) is not None, "the checkpoint must survive"
        assert "sft" not in yaml.safe_load((root / "dvc.lock").read_text())["stages"]

        server = start_mlflow(port, store, server_log)  # back
        again = subprocess.run([sys.executable, "-m", "dvc", "repro", "--single-item", "sft"], cwd=root, env=env,
                               capture_output=True, text=True, timeout=900)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
        metrics = json.loads((root / "reports" / "metrics" / "sft.json").read_text())
        assert metrics["resumed_from_step"] > 0, metrics  # the checkpoint written before the server went away
    finally:
        stop(server)


class FakeOnPort(FakeOpenAI):
    """tests/fake_openai.py's server on a port chosen beforehand (so the judge can be refused before it starts)."""

    def __init__(self, port: int):
        super().__init__()
        self.port = port

    def start(self) -> "FakeOnPort":
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self


def test_judge_endpoint_refusing_then_failing_then_recovering(tmp_path, monkeypatch):
    port = free_port()
    root = tiny_project(tmp_path / "p", judge={"model": "openai/fake", "api_base": f"http://127.0.0.1:{port}/v1",
                                               "max_retries": 1, "backoff_s": 0.05, "timeout_s": 5.0,
                                               "max_failure_rate": 0.0, "concurrency": 2})
    rows = [{"id": f"q{i}", "question": "Is there a lesion in the liver?", "answer": "yes",
             "completion": f"<think>hypodense lesion</think><answer>yes</answer> ROW{i:03d}"} for i in range(8)]
    predictions = root / "reports" / "predictions" / "sft" / "starter_a" / "reasoning.jsonl"
    predictions.parent.mkdir(parents=True)
    predictions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-judge")

    fake = FakeOnPort(port)
    for i in range(3):  # rows 0-2: two 500s each (one attempt's try and retry), then the default good reply
        fake.route(f"ROW{i:03d}", [status(500), status(500)])
    scores = root / "reports" / "judge" / "sft" / "starter_a" / "reasoning.jsonl"

    def recover_after_first_attempt():
        wait_for(scores.is_file, 600, "the first judge attempt")  # written (all errors) before the stage fails
        fake.start()

    watcher = threading.Thread(target=recover_after_first_attempt, daemon=True)
    watcher.start()
    from flows.pipeline import train

    try:
        state = train(params={"stages": ["judge"], "network_retries": 3, "retry_delay_s": 1}, project_dir=str(root),
                      return_state=True)
    finally:
        os.chdir(REPO)
        fake.stop()
    assert state.is_completed(), state.message
    judge_runs = [t for t in prefect_records()["task_runs"]
                  if t.flow_run_id == state.state_details.flow_run_id and t.name == "judge"]
    assert judge_runs[0].run_count == 3, "refused, then 500s, then good: three attempts"

    scored = [json.loads(line) for line in scores.read_text().splitlines()]
    assert len(scored) == 8 and all(s["error"] is None for s in scored), scored
    assert fake.count_for("ROW003") == 1, "a row scored in the second attempt comes from the cache in the third"
    assert fake.count_for("ROW000") == 3, "two 500s in the second attempt, scored in the third"
    summary = json.loads((root / "reports" / "metrics" / "judge.json").read_text())
    assert summary["run"]["calls"] == 3 and summary["run"]["cache_hits"] == 5


def test_a_stage_past_its_time_limit_is_stopped_and_named(tmp_path):
    root = tiny_project(tmp_path / "p")
    from flows.pipeline import train

    started = time.monotonic()
    state = train(params={"stages": ["prepare"], "timeouts_s": {"prepare": 4}}, project_dir=str(root),
                  return_state=True)
    os.chdir(REPO)
    assert state.is_failed()
    assert "stage prepare ran longer than its time limit (4 s)" in str(state.message), state.message
    assert time.monotonic() - started < 120
    assert not stage_processes(root, "prepare"), "the stage's process outlived its time limit"
    # A fast machine may finish writing before the limit (DVC was then stopped while hashing): the output is then
    # whole. What must never happen is a half-written `data/prepared` that a later run would take for finished work.
    prepared = root / "data" / "prepared"
    for dataset in prepared.glob("[!.]*") if prepared.exists() else []:
        assert (dataset / "data.parquet").is_file() and (dataset / "card.json").is_file(), sorted(dataset.iterdir())


def test_runs_left_running_by_a_dead_process_are_closed(tmp_path):
    """The clean-up behind "no orphan runs" without relying on checkpoint resume: a run whose process is gone is
    marked KILLED at the next start; a live process's run and the run being resumed are left alone."""
    import mlflow

    from rarl_core import tracking
    from tests.conftest import config_with

    cfg = config_with({"mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                                  "artifact_root": str(tmp_path / "art")}}).mlflow
    client = mlflow.MlflowClient(tracking.tracking_uri(cfg))
    experiment = tracking.experiment_id(cfg)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead_tags = {**tracking.process_tags(), tracking.PID_TAG: str(gone.pid)}
    dead_tags.pop(tracking.PID_STARTED_TAG, None)
    dead = client.create_run(experiment, run_name="killed stage", tags=dead_tags).info.run_id
    resumed = client.create_run(experiment, run_name="resumed stage", tags=dead_tags).info.run_id
    live = client.create_run(experiment, run_name="live stage", tags=tracking.process_tags()).info.run_id
    other_host = client.create_run(experiment, run_name="elsewhere",
                                   tags={**dead_tags, tracking.HOST_TAG: "another-host"}).info.run_id
    untagged = client.create_run(experiment, run_name="plain dvc repro parent").info.run_id

    closed = tracking.close_orphan_runs(cfg, keep=(resumed,))
    assert closed == [dead]
    status = {rid: client.get_run(rid).info.status for rid in (dead, resumed, live, other_host, untagged)}
    assert status == {dead: "KILLED", resumed: "RUNNING", live: "RUNNING", other_host: "RUNNING", untagged: "RUNNING"}
    assert "was gone" in client.get_run(dead).data.tags["rarl.closed_by"]
