"""What every stage adapter shares: read params.yaml, open the stage's MLflow run, report errors plainly."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rarl_core.config import Config, ConfigError, load_config
from rarl_core.tracking import Tracked

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


EVENTS_ENV = "RARL_STAGE_EVENTS"  # a JSON-lines file an orchestrator reads: which stage started, ended, failed, why
TIMEOUTS_ENV = "RARL_STAGE_TIMEOUTS"  # {stage name: seconds}: a stage past its limit stops itself and says so


def stage_event(stage: str, event: str, **fields) -> None:
    """Append one machine-readable record of this stage to the orchestrator's events file, if one is set.

    DVC names the stage it runs in DVC_STAGE (grpo@rl, compare/dvc.yaml:compare_grpo@rl-0); one short line per
    write, opened for append, so records from stages of parallel runs never interleave within a line.
    """
    if path := os.environ.get(EVENTS_ENV):
        record = {"stage": os.environ.get("DVC_STAGE", stage), "event": event, "pid": os.getpid(),
                  "time": time.time(), **fields}
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def start_watchdog(stage: str) -> None:
    """Stop this stage, and every process it started, once it runs longer than its limit in RARL_STAGE_TIMEOUTS
    (keyed by DVC stage name, then by the name its parameters use: grpo@rl, then grpo), after recording why."""
    limits = json.loads(os.environ.get(TIMEOUTS_ENV) or "{}")
    name = os.environ.get("DVC_STAGE", stage)
    limit = limits.get(name, limits.get(stage))
    if not limit:
        return

    def stop() -> None:
        import psutil

        stage_event(stage, "timed out", limit_s=limit)
        print(f"error in stage {name}: it ran longer than its time limit ({limit:.0f} s) and was stopped",
              file=sys.stderr, flush=True)
        for child in psutil.Process().children(recursive=True):
            child.kill()
        os.kill(os.getpid(), signal.SIGKILL)

    timer = threading.Timer(limit, stop)
    timer.daemon = True
    timer.start()


class StageError(RuntimeError):
    """A stage's own failure, with a message that says what to do; reported without a traceback."""


def pipeline_env() -> dict[str, str]:
    """The environment for DVC's stage commands: this interpreter's bin first on PATH, so `python -m tasks.x`
    runs in the same environment as `rarl`, even when the virtualenv is not activated."""
    env = {**QUIET_ENV, **os.environ}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


TRAINING_STAGES = ("sft", "grpo")


def accelerate_command(stage: str, args: list[str], num_processes: int, accelerate_config: str) -> list[str]:
    """`accelerate launch` of this stage with one process per GPU (resources.num_gpus > 1)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", accelerate_config,
            "--num_processes", str(num_processes), "-m", f"tasks.{stage}", *args]


def is_main_process() -> bool:
    """Under `accelerate launch` every GPU runs the stage; only rank 0 tracks runs and writes outputs."""
    return os.environ.get("RANK", "0") == "0"


@contextmanager
def stage_output(path: str | Path) -> Iterator[Path]:
    """The folder a stage writes: atomically replacing `path` on the main process, a scratch folder on the others."""
    from rarl_core.files import atomic_dir

    if is_main_process():
        with atomic_dir(path) as tmp:
            yield tmp
    else:
        with tempfile.TemporaryDirectory() as scratch:
            yield Path(scratch)


def params_hash(path: str | Path) -> str:
    """Identifies a pipeline run's configuration: stages run with the same params.yaml share a parent run."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@dataclass
class StageContext:
    """What a stage needs besides its config: where MLflow runs go, its command-line arguments."""

    stage: str
    parent_run_id: str
    variant: str | None = None
    work_dir: Path | None = None  # a training stage's checkpoint folder (see rarl_core/checkpoints.py)
    args: argparse.Namespace | None = None

    def child_run(self, cfg: Config, name: str, tags: dict[str, str] | None = None):
        from rarl_core.tracking import child_run

        return child_run(cfg.mlflow, self.parent_run_id, name, tags)


StageFn = Callable[[Config, StageContext], dict]
# For a training stage: (checkpoint folder, params it depends on, input paths) -> resumable after a kill.
Checkpointing = Callable[[Config, "str | None"], tuple[Path, dict, list[Path]]]


def numeric(metrics: dict, prefix: str = "") -> dict[str, float]:
    """The finite numbers of a (nested) metrics dict, flattened with '/' for MLflow."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(numeric(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[f"{prefix}{key}"] = float(value)
    return out


def stage_main(
    stage: str,
    run: StageFn,
    sections: tuple[str, ...],
    argv: list[str] | None = None,
    per_variant: bool = False,
    checkpointing: Checkpointing | None = None,
    arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    tracked_as: Callable[[Config, argparse.Namespace, str], Tracked] | None = None,
) -> int:
    """Run one stage: validate params before any work, track it as a nested MLflow run, exit non-zero on error.

    A `per_variant` stage (grpo, merge) runs once per GRPO variant of params.yaml, named by `--variant`.
    A stage with `checkpointing` resumes from its last checkpoint, in the same MLflow run, after being killed.
    `arguments` adds a stage's own command-line options (ctx.args); `tracked_as(cfg, args, pipeline_parent)` puts
    its MLflow run elsewhere than `<stage>` under the pipeline's parent run (the comparison's units).
    """
    parser = argparse.ArgumentParser(prog=f"python -m tasks.{stage}", description=f"Run the {stage} stage.")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    if per_variant:
        parser.add_argument("--variant", required=True, help="GRPO variant, a key of grpo.variants")
    if arguments:
        arguments(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    variant = getattr(args, "variant", None)
    quiet_env()
    if is_main_process():
        stage_event(stage, "start")
        start_watchdog(stage)
    try:
        cfg = load_config(args.params)
        if variant is not None and variant not in cfg.grpo.variants:
            raise ConfigError(f"--variant {variant!r} is not in grpo.variants ({', '.join(cfg.grpo.variants)})")
        resources = cfg.resources
        if stage in TRAINING_STAGES and resources.num_gpus > 1 and "LOCAL_RANK" not in os.environ:
            # several GPUs: the same stage, once per GPU, under `accelerate launch` (it sets LOCAL_RANK)
            cmd = accelerate_command(stage, argv, resources.num_gpus, resources.accelerate_config)
            print("+", " ".join(cmd), flush=True)
            os.execv(cmd[0], cmd)
        if is_main_process():
            from rarl_core.tracking import check_reachable

            check_reachable(cfg.mlflow)  # a clear error before any work, not minutes of MLflow's HTTP retries
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        stage_event(stage, "failed", message=str(err)[:2000])
        return 2
    from rarl_core import tracking
    from rarl_core.schema import DataError

    main_process = is_main_process()
    parent = tracking.parent_run_id(cfg.mlflow, params_hash(args.params)) if main_process else ""
    ctx = StageContext(stage, parent, variant, args=args)
    name, tags = (f"{stage}: {variant}", {"rarl.stage": stage, "rarl.variant": variant}) if variant else (stage, {"rarl.stage": stage})
    tracked = Tracked(parent, name, tags)
    try:
        if tracked_as and main_process:
            tracked = tracked_as(cfg, args, parent)
        resume_run_id = tracked.resume_run_id
        if checkpointing:
            from rarl_core import checkpoints

            work_dir, depends_on, inputs = checkpointing(cfg, variant)
            stamp = checkpoints.fingerprint(depends_on, inputs)
            ctx.work_dir = checkpoints.open_work_dir(work_dir, stamp) if main_process else work_dir
            resume_run_id = checkpoints.saved_run_id(ctx.work_dir) or resume_run_id
        if not main_process:  # another GPU's process of `accelerate launch`: train, track nothing, write nothing
            run(cfg, ctx)
            return 0
        # Runs left RUNNING by a killed process on this host are marked KILLED (the one being resumed is kept).
        tracking.close_orphan_runs(cfg.mlflow, keep=(resume_run_id,) if resume_run_id else ())
        with tracking.child_run(cfg.mlflow, tracked.parent, tracked.name, tracked.tags,
                                resume_run_id=resume_run_id) as active:
            if ctx.work_dir:
                checkpoints.save_run_id(ctx.work_dir, active.info.run_id)
            config = dataclasses.asdict(cfg)
            tracking.log_params(tracking.flatten({s: config[s] for s in sections}))
            metrics = run(cfg, ctx)
            import mlflow

            mlflow.log_metrics(numeric(metrics, f"{stage}/"))
        if ctx.work_dir:
            checkpoints.close_work_dir(ctx.work_dir)
    except (ConfigError, DataError, FileNotFoundError, StageError) as err:
        print(f"error in stage {tracked.name}: {err}", file=sys.stderr)
        stage_event(stage, "failed", message=str(err)[:2000])
        return 1
    except BaseException as err:
        stage_event(stage, "failed", message=f"{type(err).__name__}: {err}"[:2000])
        raise
    print(json.dumps(metrics, indent=2, default=str))
    stage_event(stage, "ran")
    return 0


def log_artifacts(cfg: Config, path: str | Path, artifact_path: str) -> None:
    """Log a file or folder to the active MLflow run (models only when mlflow.log_models is on)."""
    import mlflow

    path = Path(path)
    if path.is_dir():
        mlflow.log_artifacts(str(path), artifact_path)
    else:
        mlflow.log_artifact(str(path), artifact_path)


def metrics_file(cfg: Config, name: str) -> Path:
    """A stage's DVC metrics file: <paths.metrics>/<name>.json."""
    return Path(cfg.paths.metrics) / f"{name}.json"


def require(path: str | Path, stage: str) -> Path:
    """Fail before any work when an input is missing, naming it and the stage that makes it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the {stage} stage first (dvc repro {stage})")
    return path
