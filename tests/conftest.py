"""Shared test fixtures: a shrunken params.yaml that runs every stage on the embedded default in seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

for key, value in {
    "HF_HUB_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "TOKENIZERS_PARALLELISM": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}.items():
    os.environ.setdefault(key, value)

# A 60-step vision pretraining (the shipped 600 take ~55 s per tiny model built): tests that check what the model
# sees (tests/tasks/test_sft_sees_the_image.py) put the shipped one back.
QUICK_VISION_PRETRAIN = {"steps": 60, "batch_size": 32, "learning_rate": 0.003, "images": 512, "natural_fraction": 0.5,
                         "seed": 0, "threads": 0}

# Small enough that every stage runs in seconds on 2 cores; large enough that SFT visibly learns.
SMALL = {
    "sft": {"max_steps": 100, "batch_size": 16, "logging_steps": 10},
    "grpo": {"max_steps": 4, "batch_size": 8, "num_generations": 4, "max_completion_length": 24, "logging_steps": 1},
    "evaluate": {"max_questions": 24, "batch_size": 24, "max_new_tokens": 32, "image_controls": [],
                 "prompts": ["plain", "reasoning"]},  # the shipped default has one prompt; tests check two
    "augment": {"variants_per_question": 1},
    "tiny_model": {"vision_pretrain": QUICK_VISION_PRETRAIN},
}  # the image controls cost a generation pass each: on where a test checks them (test_stages, test_compare)


def shipped_config():
    """The shipped params.yaml, loaded: what a test starts from, since no config field has a Python default."""
    from rarl_core.config import load_config

    return load_config(REPO / "params.yaml")


def config_with(overrides: dict):
    """The shipped params with `overrides` ({section: {key: value}}) applied key by key, loaded and validated."""
    from rarl_core.config import config_from_dict

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section] = {**params.get(section, {}), **values} if isinstance(values, dict) else values
    return config_from_dict(params)


def small_params(root: Path, absolute_paths: bool = True, **overrides: dict) -> Path:
    """Write root/params.yaml: the shipped params with SMALL (and `overrides`) applied, stores under `root`."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in {**SMALL, **overrides}.items():
        params[section].update(values)
    if absolute_paths:
        params["paths"] = {k: str(root / v) for k, v in params["paths"].items()}
        params["model"]["name_or_path"] = params["paths"]["tiny_model"]
        params["mlflow"]["tracking_uri"] = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
        params["mlflow"]["artifact_root"] = str(root / "mlflow" / "artifacts")
        params["judge"]["cache_path"] = str(root / "cache" / "judge.sqlite")
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def copy_project(dest: Path) -> Path:
    """A fresh git repository holding the project's files as they are now (tracked and untracked, not ignored)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file() and not name.startswith(("data/", "models/", "reports/", "mlflow/mlflow.db")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    for stale in ("dvc.lock",):
        (dest / stale).unlink(missing_ok=True)
    git = ["git", "-c", "user.email=test@rarl.local", "-c", "user.name=rarl tests"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "test project"], cwd=dest, check=True)
    return dest


def venv_env() -> dict[str, str]:
    """Environment for subprocesses: this interpreter's bin first on PATH (dvc.yaml's `python`)."""
    return {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


@pytest.fixture(scope="session")
def sft_workspace(tmp_path_factory):
    """A workspace where prepare, augment, tiny_model and sft have run on the small params (shared by tests)."""
    from rarl_core.config import load_config
    from tasks import augment, prepare, sft, tiny_model

    root = tmp_path_factory.mktemp("sft-workspace")
    params = small_params(root)
    for stage in (prepare, augment, tiny_model, sft):
        assert stage.main(["--params", str(params)]) == 0
    return {"root": root, "params": params, "cfg": load_config(params)}
