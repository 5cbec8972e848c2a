"""The `rarl` flow: the pipeline's stages as Prefect tasks, in order.

Each task runs its stage through DVC (`dvc repro --single-item <stage>`) in a child process:
- DVC stays the one cache: a stage whose inputs did not change is skipped, and every run lands in dvc.lock, so a
  Prefect run is reproducible with plain `dvc repro`. Prefect's own result caching is switched off.
- the child process frees all memory (GPU included) when the stage ends.
Prefect adds what DVC lacks: logs and artifacts in a UI, retries, schedules, remote workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks import STAGES
from tasks.cli import pipeline_env

PROJECT_DIR = Path(__file__).resolve().parent.parent


class StageFailed(RuntimeError):
    """A stage exited non-zero; its own message is in the task's log."""


@task(task_run_name="{stage}", cache_policy=NO_CACHE, persist_result=False)
def run_stage(stage: str, force: bool = False) -> None:
    """Run one DVC stage, streaming its output into the task's log."""
    logger = get_run_logger()
    cmd = [sys.executable, "-m", "dvc", "repro", "--single-item", stage, *(["--force"] if force else [])]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=pipeline_env()) as proc:
        for line in proc.stdout:
            if line.strip():
                logger.info(line.rstrip())
    if proc.returncode:
        raise StageFailed(
            f"stage {stage} failed (exit {proc.returncode}); its error is in the log above. Fix it and re-run the "
            "flow: finished stages are skipped."
        )


@flow(name="rarl", log_prints=True)
def train(stages: list[str] | None = None, force: bool = False, project_dir: str | None = None) -> str:
    """Run the RARL pipeline (all stages by default) and publish the comparison report as a flow-run artifact."""
    os.chdir(project_dir or os.environ.get("RARL_PROJECT_DIR") or PROJECT_DIR)
    unknown = set(stages or ()) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; the pipeline's stages are {', '.join(STAGES)}")
    for stage in [s for s in STAGES if stages is None or s in stages]:
        run_stage(stage, force)
    from rarl_core.config import load_config

    report = Path(load_config().paths.report)
    markdown = report.read_text() if report.is_file() else "No report yet: run the evaluate and report stages."
    create_markdown_artifact(markdown, key="rarl-report", description="Base vs SFT vs GRPO comparison")
    return markdown


if __name__ == "__main__":
    train()
