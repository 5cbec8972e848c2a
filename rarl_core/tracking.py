"""MLflow runs that span processes: one parent run per pipeline run, one nested run per stage (and per evaluated model).

Stages run in separate processes (DVC, Prefect), so the parent run is found rather than held in memory: the flow or
`rarl run` creates it and passes its id in RARL_PARENT_RUN_ID; a stage run alone (plain `dvc repro`) finds the open
parent run tagged with the same params hash, or opens one. Training stages log through TRL's `report_to=["mlflow"]`,
which writes into the stage run that is active when the trainer starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rarl_core.config import MlflowConfig

PARENT_ENV = "RARL_PARENT_RUN_ID"


def _mlflow():
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    return mlflow


def tracking_uri(cfg: MlflowConfig) -> str:
    """The tracking URI, with a relative SQLite path made absolute (stages may run from another directory)."""
    uri = cfg.tracking_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = Path(uri.removeprefix("sqlite:///")).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{path}"
    return uri


def experiment_id(cfg: MlflowConfig) -> str:
    """Point MLflow at the configured store and return the experiment's id, creating it with the artifact root."""
    mlflow = _mlflow()
    mlflow.set_tracking_uri(tracking_uri(cfg))
    experiment = mlflow.get_experiment_by_name(cfg.experiment)
    if experiment is not None:
        return experiment.experiment_id
    root = cfg.artifact_root
    if "://" not in root:
        Path(root).mkdir(parents=True, exist_ok=True)
        root = Path(root).resolve().as_uri()
    return mlflow.create_experiment(cfg.experiment, artifact_location=root)


def start_pipeline_run(cfg: MlflowConfig, params_hash: str, run_name: str = "pipeline") -> str:
    """Open a new parent run for one pipeline run; return its id."""
    client = _mlflow().MlflowClient()
    run = client.create_run(
        experiment_id(cfg),
        run_name=run_name,
        tags={"rarl.kind": "pipeline", "rarl.params_hash": params_hash},
    )
    return run.info.run_id


def parent_run_id(cfg: MlflowConfig, params_hash: str) -> str:
    """The current pipeline's parent run: from RARL_PARENT_RUN_ID, else the open run with these params, else new."""
    if run_id := os.environ.get(PARENT_ENV):
        return run_id
    client = _mlflow().MlflowClient()
    found = client.search_runs(
        [experiment_id(cfg)],
        filter_string=f"tags.`rarl.kind` = 'pipeline' and tags.`rarl.params_hash` = '{params_hash}' "
        "and attributes.status = 'RUNNING'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0].info.run_id if found else start_pipeline_run(cfg, params_hash)


def end_pipeline_run(cfg: MlflowConfig, run_id: str, status: str = "FINISHED") -> None:
    _mlflow().set_tracking_uri(tracking_uri(cfg))
    _mlflow().MlflowClient().set_terminated(run_id, status=status)


@contextmanager
def child_run(cfg: MlflowConfig, parent_id: str, name: str, tags: dict[str, str] | None = None) -> Iterator[object]:
    """Make a nested run under `parent_id` the active MLflow run for the block; mark it FAILED on error."""
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    run = client.create_run(
        experiment_id(cfg),
        run_name=name,
        tags={"mlflow.parentRunId": parent_id, **(tags or {})},
    )
    # The transformers callback would otherwise open runs of its own from these variables.
    for var in ("MLFLOW_RUN_ID", "MLFLOW_NESTED_RUN"):
        os.environ.pop(var, None)
    with mlflow.start_run(run_id=run.info.run_id, nested=mlflow.active_run() is not None) as active:
        yield active


def log_params(params: dict[str, object]) -> None:
    """Log flattened params in batches (MLflow takes at most 100 at a time, values up to 6000 chars)."""
    mlflow = _mlflow()
    items = [(k, str(v)[:6000]) for k, v in params.items()]
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start : start + 100]))


def flatten(data: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
