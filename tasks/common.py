"""What every stage adapter shares: read params.yaml, open the stage's MLflow run, report errors plainly."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rarl_core.config import Config, ConfigError, load_config

QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "TOKENIZERS_PARALLELISM": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DISABLE_MLFLOW_INTEGRATION": "FALSE",
}


def quiet_env() -> None:
    """No telemetry, no network look-ups at import (LiteLLM's cost map), no tokenizer fork warnings."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def params_hash(path: str | Path) -> str:
    """Identifies a pipeline run's configuration: stages run with the same params.yaml share a parent run."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@dataclass
class StageContext:
    """What a stage needs besides its config: where MLflow runs go."""

    stage: str
    params_path: Path
    parent_run_id: str

    def child_run(self, cfg: Config, name: str, tags: dict[str, str] | None = None):
        from rarl_core.tracking import child_run

        return child_run(cfg.mlflow, self.parent_run_id, name, tags)


StageFn = Callable[[Config, StageContext], dict]


def numeric(metrics: dict, prefix: str = "") -> dict[str, float]:
    """The finite numbers of a (nested) metrics dict, flattened with '/' for MLflow."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(numeric(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[f"{prefix}{key}"] = float(value)
    return out


def stage_main(stage: str, run: StageFn, sections: tuple[str, ...], argv: list[str] | None = None) -> int:
    """Run one stage: validate params before any work, track it as a nested MLflow run, exit non-zero on error."""
    parser = argparse.ArgumentParser(prog=f"python -m tasks.{stage}", description=f"Run the {stage} stage.")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    quiet_env()
    try:
        cfg = load_config(args.params)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from rarl_core import tracking
    from rarl_core.data import DataError

    parent = tracking.parent_run_id(cfg.mlflow, params_hash(args.params))
    ctx = StageContext(stage, Path(args.params), parent)
    try:
        with ctx.child_run(cfg, stage, {"rarl.stage": stage}):
            config = dataclasses.asdict(cfg)
            tracking.log_params(tracking.flatten({s: config[s] for s in sections}))
            metrics = run(cfg, ctx)
            import mlflow

            mlflow.log_metrics(numeric(metrics, f"{stage}/"))
    except (ConfigError, DataError, FileNotFoundError) as err:
        print(f"error in stage {stage}: {err}", file=sys.stderr)
        return 1
    print(json.dumps(metrics, indent=2, default=str))
    return 0


def log_artifacts(cfg: Config, path: str | Path, artifact_path: str) -> None:
    """Log a file or folder to the active MLflow run (models only when mlflow.log_models is on)."""
    import mlflow

    path = Path(path)
    if path.is_dir():
        mlflow.log_artifacts(str(path), artifact_path)
    else:
        mlflow.log_artifact(str(path), artifact_path)


def require(path: str | Path, stage: str) -> Path:
    """Fail before any work when an input is missing, naming it and the stage that makes it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the {stage} stage first (dvc repro {stage})")
    return path
