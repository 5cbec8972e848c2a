"""`dvc repro` end to end, in a temporary git clone of the project with the operations tests' TINY params (this checks
what DVC runs, not what the model learns) and the shipped GRPO variants: everything builds; a second `dvc repro` does
nothing; changing one parameter re-runs only the stages downstream of it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO, venv_env
from tests.flows.helpers import tiny_project


def dvc(project, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=venv_env(),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def project(tmp_path):
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())["grpo"]["variants"]  # RL and RARL: a grpo + merge each
    return tiny_project(tmp_path / "project", grpo={"variants": shipped})


def test_dvc_repro_builds_then_skips_then_reruns_downstream(project):
    dvc(project, "repro")
    metrics = json.loads((project / "reports" / "metrics" / "eval.json").read_text())
    assert set(metrics["models"]) == {"base", "sft", "rl", "rarl"}
    assert (project / "reports" / "report.md").read_text().startswith("# RARL comparison")
    assert (project / "models" / "merged" / "rarl" / "config.json").is_file()

    assert "Running stage" not in dvc(project, "repro")

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["max_new_tokens"] += 4
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = dvc(project, "repro")
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"evaluate", "judge", "report"}

    shown = dvc(project, "metrics", "show", "--json")
    assert "eval.json" in shown
