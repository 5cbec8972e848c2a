"""The `rarl` Prefect flow under Prefect's test harness, on a copy of the project with shrunken params.

Asserts that every stage ran as a task, that the runs were recorded by DVC (so plain `dvc repro` afterwards has
nothing to do: no second cache), and that the report was published as a flow-run artifact.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from tasks import STAGES
from tests.conftest import venv_env


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_flow_runs_every_stage_through_dvc(project, harness, monkeypatch):
    from prefect.client.orchestration import get_client

    from flows.pipeline import train

    monkeypatch.setenv("PATH", venv_env()["PATH"])
    monkeypatch.chdir(project)
    state = train(project_dir=str(project), return_state=True)
    assert state.is_completed(), state.message
    assert "| grpo | starter_b | unseen |" in state.result()

    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    again = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=project, env=venv_env(),
                           capture_output=True, text=True, check=True)
    assert "up to date" in again.stdout

    async def read_back():
        async with get_client() as client:
            runs = await client.read_task_runs()
            artifact = await client.read_latest_artifacts()
            return runs, artifact

    import asyncio

    task_runs, artifacts = asyncio.run(read_back())
    assert {r.name for r in task_runs} >= set(STAGES)
    assert any(a.key == "rarl-report" for a in artifacts)


def test_unknown_stage_is_rejected_before_any_work(project, harness):
    from flows.pipeline import train

    state = train(stages=["sft", "tran"], project_dir=str(project), return_state=True)
    assert state.is_failed()
    assert "tran" in str(state.message) or "tran" in repr(state.result(raise_on_failure=False))
