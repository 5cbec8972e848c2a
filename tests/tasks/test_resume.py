"""A training stage killed with SIGKILL resumes from its last checkpoint: same global step, same MLflow run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow

from rarl_core.config import load_config
from tasks import augment, prepare, sft, tiny_model
from tests.conftest import REPO, small_params


def test_sft_killed_mid_run_resumes_in_the_same_run(tmp_path):
    params = small_params(tmp_path, sft={"max_steps": 40, "batch_size": 8, "save_steps": 10, "logging_steps": 5})
    cfg = load_config(params)
    for stage in (prepare, augment, tiny_model):
        assert stage.main(["--params", str(params)]) == 0

    work = Path(cfg.paths.checkpoints) / "sft"
    proc = subprocess.Popen([sys.executable, "-m", "tasks.sft", "--params", str(params)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (work / "checkpoint-20" / "trainer_state.json").exists():
        assert proc.poll() is None, "sft finished before it could be killed: raise max_steps"
        assert time.time() < deadline, "no checkpoint-20 within 5 minutes"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not Path(cfg.paths.sft_model).exists()  # nothing that looks finished was left behind

    assert sft.main(["--params", str(params)]) == 0
    summary = json.loads((Path(cfg.paths.metrics) / "sft.json").read_text())
    assert summary["resumed_from_step"] >= 20
    assert summary["global_step"] == 40
    assert not work.exists()  # checkpoints are dropped once the stage is done

    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    (run,) = mlflow.search_runs(experiment_names=[cfg.mlflow.experiment], output_format="list",
                                filter_string="attributes.run_name = 'sft'")
    assert run.info.status == "FINISHED"
    steps = [m.step for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")]
    assert steps == sorted(steps)
    assert sorted(set(steps)) == list(range(5, 41, 5))  # one continuous curve, step 5 to 40
    repeated = {s for s in steps if steps.count(s) > 1}
    assert all(s > summary["resumed_from_step"] for s in repeated)  # only steps after the checkpoint were redone


def test_changed_params_never_resume_an_old_checkpoint(tmp_path):
    from rarl_core import checkpoints

    work = tmp_path / "ckpt"
    checkpoints.open_work_dir(work, "a")
    (work / "checkpoint-10").mkdir()
    (work / "checkpoint-10" / "trainer_state.json").write_text("{}")
    assert checkpoints.last_checkpoint(checkpoints.open_work_dir(work, "a")) is not None
    assert checkpoints.last_checkpoint(checkpoints.open_work_dir(work, "b")) is None

    data = tmp_path / "data.bin"
    data.write_bytes(b"1")
    before = checkpoints.fingerprint({"lr": 1}, [data])
    data.write_bytes(b"2")
    assert checkpoints.fingerprint({"lr": 1}, [data]) != before
    assert checkpoints.fingerprint({"lr": 2}, [data]) != checkpoints.fingerprint({"lr": 1}, [data])


def test_other_ranks_wait_until_rank_0_has_opened_the_work_dir(tmp_path):
    """Under `accelerate launch` only rank 0 empties a stale checkpoint folder and stamps it; the other ranks must not
    look for a checkpoint before that, or they would resume one that rank 0 is deleting."""
    import threading

    import pytest

    from rarl_core import checkpoints

    work = tmp_path / "ckpt"
    checkpoints.open_work_dir(work, "old")
    (work / "checkpoint-10").mkdir()
    (work / "checkpoint-10" / "trainer_state.json").write_text("{}")
    seen = []
    waiter = threading.Thread(target=lambda: seen.append(checkpoints.wait_for_work_dir(work, "new", timeout_s=120)))
    waiter.start()
    waiter.join(1.0)
    assert waiter.is_alive() and not seen, "a rank went on with the stale folder of another fingerprint"
    checkpoints.open_work_dir(work, "new")  # rank 0
    waiter.join(60)
    assert seen == [work] and checkpoints.last_checkpoint(work) is None
    assert checkpoints.wait_for_work_dir(work, "new", timeout_s=0) == work  # kept for a resume: at once
    with pytest.raises(TimeoutError, match="rank 0 did not open"):
        checkpoints.wait_for_work_dir(work, "other", timeout_s=0.5)
