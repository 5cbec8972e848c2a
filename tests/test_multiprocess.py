"""sft and grpo as 2 training processes on CPU, through their real stage commands (`python -m tasks.sft`, `python -m
tasks.grpo --variant ...`): resources.num_processes 2 with accelerate/cpu_ddp.yaml, DDP over gloo, one torch thread
per process on 2 cores.

Each stage must train on both processes (rank 1 reports the global step it reached, the stage metrics say 2
processes of MULTI_CPU), track and write from rank 0 only (one MLflow run per stage, each logged step once, one output
folder), and move its weights. A 2-process run whose process group is SIGKILLed after a checkpoint leaves no process
behind (torchrun gives each worker a session of its own) and resumes from the checkpoint, in the same MLflow run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
from safetensors.torch import load_file

from rarl_core.checkpoints import last_checkpoint
from rarl_core.config import load_config
from tasks import augment, prepare, tiny_model
from tasks.common import threads_per_process
from tests.conftest import REPO, small_params, venv_env
from tests.test_faults import stage_processes, wait_for

pytestmark = pytest.mark.slow
PROCESSES = {"num_processes": 2, "accelerate_config": "accelerate/cpu_ddp.yaml"}
SFT = {"max_steps": 40, "batch_size": 8, "logging_steps": 10, "save_steps": 1000}
GRPO = {"max_steps": 6, "batch_size": 4, "num_generations": 2, "max_completion_length": 16, "logging_steps": 1,
        "save_steps": 1}


def stage_command(params: Path, stage: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"tasks.{stage}", "--params", str(params), *args]


def run_stage(params: Path, stage: str, *args: str) -> str:
    """The stage's command as DVC runs it; its output (both ranks') on success."""
    proc = subprocess.run(stage_command(params, stage, *args), cwd=REPO, env=venv_env(), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def stage_runs(cfg, name: str) -> list:
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    return mlflow.search_runs(experiment_names=[cfg.mlflow.experiment], output_format="list",
                              filter_string=f"attributes.run_name = '{name}'")


def logged_steps(run, key: str) -> list[int]:
    return [m.step for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, key)]


def trained_on_two_processes(metrics: dict, output: str, name: str, steps: int) -> None:
    assert (metrics["processes"], metrics["distributed_type"]) == (2, "MULTI_CPU"), metrics
    assert metrics["threads_per_process"] == threads_per_process(2), metrics  # cores shared out, set on purpose
    assert metrics["global_step"] == steps, metrics
    # DDP steps only with every rank in the all-reduce: rank 1 reaching the last step means it trained each one
    assert f"rank 1 of 2: {name} trained to global step {steps}" in output, output[-3000:]


@pytest.fixture(scope="module")
def two_process_sft(tmp_path_factory):
    """prepare -> augment -> tiny_model in this process, then sft as 2 processes by its stage command."""
    root = tmp_path_factory.mktemp("multiprocess")
    params = small_params(root, sft=SFT, grpo=GRPO, resources=PROCESSES)
    for stage in (prepare, augment, tiny_model):
        assert stage.main(["--params", str(params)]) == 0
    output = run_stage(params, "sft")
    return {"root": root, "params": params, "cfg": load_config(params), "output": output}


def test_sft_trains_on_both_processes_and_only_rank_0_tracks_and_writes(two_process_sft):
    cfg, root = two_process_sft["cfg"], two_process_sft["root"]
    metrics = json.loads((Path(cfg.paths.metrics) / "sft.json").read_text())
    trained_on_two_processes(metrics, two_process_sft["output"], "sft", SFT["max_steps"])
    assert metrics["last_loss"] < metrics["first_loss"] / 2, metrics  # the loss moved

    (run,) = stage_runs(cfg, "sft")  # one MLflow run: rank 1 opened none
    assert run.info.status == "FINISHED"
    assert logged_steps(run, "loss") == list(range(10, SFT["max_steps"] + 1, 10))  # each step logged once
    assert (Path(cfg.paths.sft_model) / "model.safetensors").is_file()
    assert not list(root.rglob("*.tmp-*")), "a writer's temporary folder was left behind"  # one output folder
    assert not (Path(cfg.paths.checkpoints) / "sft").exists()  # closed by rank 0 once the model was in place


def test_grpo_trains_on_both_processes_and_only_rank_0_tracks_and_writes(two_process_sft):
    cfg = two_process_sft["cfg"]
    output = run_stage(two_process_sft["params"], "grpo", "--variant", "rarl")
    metrics = json.loads((Path(cfg.paths.metrics) / "grpo-rarl.json").read_text())
    trained_on_two_processes(metrics, output, "grpo: rarl", GRPO["max_steps"])

    (run,) = stage_runs(cfg, "grpo: rarl")
    assert run.info.status == "FINISHED"
    assert logged_steps(run, "rewards/reasoning_reward/mean") == list(range(1, GRPO["max_steps"] + 1))
    assert not list(Path(cfg.paths.adapters).glob(".*")), "a writer's temporary folder was left behind"
    adapter = load_file(Path(cfg.paths.adapters) / "rarl" / "adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and any(torch.count_nonzero(v) for v in lora_b)  # B starts at zero: the averaged gradient moved it


def test_a_sigkilled_two_process_run_resumes_from_its_checkpoint(two_process_sft, tmp_path):
    cfg, params = two_process_sft["cfg"], two_process_sft["params"]
    work = Path(cfg.paths.checkpoints) / "grpo-rl"
    log = tmp_path / "killed.log"
    proc = subprocess.Popen(stage_command(params, "grpo", "--variant", "rl"), cwd=REPO, env=venv_env(),
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    checkpoint = wait_for(lambda: last_checkpoint(work), 600, "the first GRPO checkpoint", proc, log)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher's whole process group, as a stage's time limit does
    assert proc.wait(60) == -signal.SIGKILL
    # torchrun starts each rank in a session of its own: only dying with their launcher keeps them out of this
    wait_for(lambda: not stage_processes(REPO, "grpo"), 60, "the ranks to die with their launcher")
    assert not (Path(cfg.paths.adapters) / "rl").exists()
    (killed,) = stage_runs(cfg, "grpo: rl")
    assert killed.info.status == "RUNNING", "a SIGKILLed process cannot close its run"

    output = run_stage(params, "grpo", "--variant", "rl")
    metrics = json.loads((Path(cfg.paths.metrics) / "grpo-rl.json").read_text())
    trained_on_two_processes(metrics, output, "grpo: rl", GRPO["max_steps"])
    assert metrics["resumed_from_step"] >= int(checkpoint.rsplit("-", 1)[1]) >= 1, metrics  # the step continued
    (resumed,) = stage_runs(cfg, "grpo: rl")
    assert resumed.info.run_id == killed.info.run_id and resumed.info.status == "FINISHED"
    steps = logged_steps(resumed, "reward")
    assert steps == sorted(steps) and sorted(set(steps)) == list(range(1, GRPO["max_steps"] + 1))
    assert (Path(cfg.paths.adapters) / "rl" / "adapter_model.safetensors").is_file()
