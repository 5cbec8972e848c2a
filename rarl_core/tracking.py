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
from dataclasses import dataclass

from rarl_core.config import ConfigError, MlflowConfig
from rarl_core.files import project_path

PARENT_ENV = "RARL_PARENT_RUN_ID"


@dataclass
class Tracked:
    """Where a stage's MLflow run goes: under `parent`, named `name`, with `tags`; or, with `resume_run_id`, into that
    existing run (the evaluation of a comparison unit logs into the run its training stage opened)."""

    parent: str
    name: str
    tags: dict[str, str]
    resume_run_id: str | None = None


def _mlflow():
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    return mlflow


def tracking_uri(cfg: MlflowConfig) -> str:
    """The tracking URI, with a relative SQLite path made absolute against the project root (rarl_core.files.project_path:
    an experiment run in a temporary copy tracks into the project's one store)."""
    uri = cfg.tracking_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = project_path(uri.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{path}"
    return uri


# The MLflow UI opens an experiment in its GenAI view unless told it holds model training (MLflow 3's kind tag).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(cfg: MlflowConfig) -> str:
    """Point MLflow at the configured store and return the experiment's id, creating it with the artifact root (and
    the tag that opens it in the UI's model-training view)."""
    mlflow = _mlflow()
    mlflow.set_tracking_uri(tracking_uri(cfg))
    experiment = mlflow.get_experiment_by_name(cfg.experiment)
    if experiment is not None:
        if experiment.tags.get("mlflow.experimentKind") is None:  # made by an older version, or by hand
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
        return experiment.experiment_id
    root = cfg.artifact_root
    if "://" not in root:
        path = project_path(root)
        path.mkdir(parents=True, exist_ok=True)
        root = path.as_uri()
    return mlflow.create_experiment(cfg.experiment, artifact_location=root, tags=EXPERIMENT_KIND)


def log_dataset(frame, source: str, name: str, context: str) -> None:
    """A dataset as an MLflow input of the active run (the UI's Datasets column): its name, source, digest, schema."""
    import mlflow.data

    _mlflow().log_input(mlflow.data.from_pandas(frame, source=source, name=name), context=context)


def drop_if_empty(cfg: MlflowConfig, run_id: str) -> bool:
    """Delete a parent run that holds no nested run (a pipeline run in which DVC found every stage up to date):
    an empty run in the UI reads as a run that did something. True when deleted."""
    client = _mlflow().MlflowClient()
    if client.search_runs([experiment_id(cfg)], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'",
                          max_results=1):
        return False
    client.delete_run(run_id)
    return True


def start_pipeline_run(cfg: MlflowConfig, params_hash: str, run_name: str = "pipeline") -> str:
    """Open a new parent run for one pipeline run; return its id."""
    experiment = experiment_id(cfg)  # first: it points MLflow at the configured store
    client = _mlflow().MlflowClient()
    run = client.create_run(
        experiment,
        run_name=run_name,
        tags={"rarl.kind": "pipeline", "rarl.params_hash": params_hash},
    )
    return run.info.run_id


def parent_run_id(cfg: MlflowConfig, params_hash: str) -> str:
    """The current pipeline's parent run: from RARL_PARENT_RUN_ID, else the open run with these params, else new."""
    if run_id := os.environ.get(PARENT_ENV):
        return run_id
    experiment = experiment_id(cfg)  # first: a client made before it would search MLflow's default store
    client = _mlflow().MlflowClient()
    found = client.search_runs(
        [experiment],
        filter_string=f"tags.`rarl.kind` = 'pipeline' and tags.`rarl.params_hash` = '{params_hash}' "
        "and attributes.status = 'RUNNING'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0].info.run_id if found else start_pipeline_run(cfg, params_hash)


def find_child_run(cfg: MlflowConfig, parent_id: str, tags: dict[str, str]) -> str | None:
    """The newest run nested under `parent_id` that carries every tag of `tags`, or None."""
    experiment = experiment_id(cfg)
    conditions = [f"tags.`mlflow.parentRunId` = '{parent_id}'", *(f"tags.`{k}` = '{v}'" for k, v in tags.items())]
    found = _mlflow().MlflowClient().search_runs([experiment], filter_string=" and ".join(conditions),
                                                 order_by=["attributes.start_time DESC"], max_results=1)
    return found[0].info.run_id if found else None


COMPARISON_ENV = "RARL_COMPARISON_RUN_ID"
COMPARISON_TAGS = {"rarl.kind": "comparison", "rarl.stage": "compare"}


def comparison_run_id(cfg: MlflowConfig, parent_id: str) -> str:
    """The comparison's run (`rarl compare`), nested under the pipeline's parent run: every unit's run is nested
    under it. From RARL_COMPARISON_RUN_ID (the flow opens it once, before workers on several hosts start units),
    else the one already under `parent_id`, else a new one. It stays RUNNING until the analysis stage ends it."""
    if run_id := os.environ.get(COMPARISON_ENV):
        return run_id
    if run_id := find_child_run(cfg, parent_id, COMPARISON_TAGS):
        return run_id
    client = _mlflow().MlflowClient()
    run = client.create_run(experiment_id(cfg), run_name="compare",
                            tags={"mlflow.parentRunId": parent_id, **COMPARISON_TAGS})
    return run.info.run_id


def compare_unit_run(cfg: MlflowConfig, model: str, seed: int | None, pipeline_parent: str) -> Tracked:
    """The MLflow run of one `rarl compare` unit ("rl seed 0", "sft"), nested under the comparison's run: opened by
    the unit's training stage, continued by its evaluation stage."""
    parent = comparison_run_id(cfg, pipeline_parent)
    tags = {"rarl.stage": "compare", "rarl.model": model, "rarl.seed": str(seed)}
    name = model if seed is None else f"{model} seed {seed}"
    return Tracked(parent, name, tags, find_child_run(cfg, parent, tags))


def end_pipeline_run(cfg: MlflowConfig, run_id: str, status: str = "FINISHED") -> None:
    _mlflow().set_tracking_uri(tracking_uri(cfg))
    _mlflow().MlflowClient().set_terminated(run_id, status=status)


@contextmanager
def child_run(
    cfg: MlflowConfig, parent_id: str, name: str, tags: dict[str, str] | None = None, resume_run_id: str | None = None
) -> Iterator[object]:
    """Make a nested run under `parent_id` the active MLflow run for the block; mark it FAILED on error.

    `resume_run_id` continues an existing run (a training stage resumed from its checkpoint), so that MLflow shows
    one continuous run rather than a killed one and a new one.
    """
    mlflow = _mlflow()
    experiment = experiment_id(cfg)  # first: it points MLflow at the configured store
    client = mlflow.MlflowClient()
    run = _existing_run(client, resume_run_id) or client.create_run(
        experiment,
        run_name=name,
        tags={"mlflow.parentRunId": parent_id, **process_tags(), **(tags or {})},
    )
    # The transformers callback would otherwise open runs of its own from these variables.
    for var in ("MLFLOW_RUN_ID", "MLFLOW_NESTED_RUN"):
        os.environ.pop(var, None)
    with mlflow.start_run(run_id=run.info.run_id, nested=mlflow.active_run() is not None) as active:
        if resume_run_id:  # a continued run now belongs to this process (see close_orphan_runs)
            mlflow.set_tags(process_tags())
        yield active


def _existing_run(client, run_id: str | None):
    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except Exception:  # deleted or from another store: start a fresh run
        return None


def log_history(logs: list[dict], prefix: str) -> None:
    """Per-step training logs (a Trainer's log_history: dicts with `step`) into the active run, after training: the
    curves are in MLflow without any logging call during the timed training."""
    import time

    from mlflow.entities import Metric

    mlflow = _mlflow()
    now = int(time.time() * 1000)
    points = [Metric(f"{prefix}{key}", float(value), now, int(log["step"])) for log in logs for key, value in log.items()
              if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)]
    client, run_id = mlflow.MlflowClient(), mlflow.active_run().info.run_id
    for start in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=points[start:start + 1000])


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


# ----------------------------------------------------------------------------------------------------------------
# Operations: is the tracking server there, and which runs did a killed process leave open
# ----------------------------------------------------------------------------------------------------------------

HOST_TAG, PID_TAG, PID_STARTED_TAG = "rarl.host", "rarl.pid", "rarl.pid_started"


class TrackingUnreachable(ConfigError):
    """mlflow.tracking_uri names a server that does not answer: raised before any work, with what to do."""


def check_reachable(cfg: MlflowConfig, wait_s: float = 5.0) -> None:
    """For an http(s) tracking URI, fail fast (within `wait_s`) when the server does not answer its /health.

    Without this, MLflow's own HTTP retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES, with backoff) make a stage hang for
    minutes before failing, after it may already have loaded a model. Local stores (sqlite, file) need no check.
    A server that answers at all (even 401/403 behind a proxy) counts as reachable; 5xx and no answer do not.
    """
    import urllib.error
    import urllib.request

    uri = cfg.tracking_uri
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=wait_s):
            return
    except urllib.error.HTTPError as err:
        if err.code < 500:
            return
        reason = f"HTTP {err.code} from {url}"
    except (urllib.error.URLError, OSError) as err:
        reason = str(getattr(err, "reason", err))
    raise TrackingUnreachable(
        f"the MLflow tracking server {uri} is not reachable ({reason}); nothing was run. Start it (`rarl serve` "
        f"starts one on the project's store) or set mlflow.tracking_uri to a local store such as "
        f"sqlite:///mlflow/mlflow.db"
    )


def process_tags() -> dict[str, str]:
    """Which process owns a run: lets a later start tell a live run from one whose process was killed."""
    import socket

    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    try:
        import psutil

        tags[PID_STARTED_TAG] = f"{psutil.Process().create_time():.2f}"
    except Exception:  # no psutil: the pid alone is checked
        pass
    return tags


def _process_alive(pid: int, started: str | None) -> bool:
    """True when `pid` runs and is the process that tagged the run (not a later one that recycled the pid)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return not started or abs(proc.create_time() - float(started)) < 1.0
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    except Exception:  # psutil.NoSuchProcess, AccessDenied
        return False


def close_orphan_runs(cfg: MlflowConfig, keep: tuple[str, ...] = ()) -> list[str]:
    """Mark KILLED every RUNNING run of this experiment that a process on this host opened and that is now gone.

    A stage killed with SIGKILL (or a crashed orchestrator) cannot end its MLflow run, which would otherwise show
    as running forever. Runs opened on other hosts, or without the process tags, are left alone; `keep` names runs
    that the caller is about to continue (a training stage resumed from its checkpoint). Returns the closed run ids.
    """
    import socket

    mlflow = _mlflow()
    experiment = experiment_id(cfg)
    client = mlflow.MlflowClient()
    host = socket.gethostname()
    closed = []
    runs = client.search_runs(
        [experiment], filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'", max_results=1000
    )
    for run in runs:
        pid = run.data.tags.get(PID_TAG, "")
        if run.info.run_id in keep or not pid.isdigit() or int(pid) == os.getpid():
            continue
        if not _process_alive(int(pid), run.data.tags.get(PID_STARTED_TAG)):
            client.set_tag(run.info.run_id, "rarl.closed_by", f"orphan clean-up: process {pid} on {host} was gone")
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
    return closed
