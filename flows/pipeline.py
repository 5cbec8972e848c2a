"""The `rarl` flow (deployment `rarl/train`): the pipeline's DVC stages run from Prefect, one MLflow parent run each.

How a run executes depends on its parameters (flows/params.py):

* No overrides (the default): each stage is one Prefect task running `dvc repro --single-item <stage>` in the
  project's workspace, in pipeline order. DVC stays the one cache: a stage whose inputs did not change is skipped,
  every run lands in dvc.lock, and the result is exactly what `dvc repro` would give.
* Overrides (or an experiment name, or `isolated: true`): the run is one DVC experiment, `dvc exp run --temp
  --name <experiment> -S key=value ... [stages]`. DVC applies the overrides to params.yaml in a temporary copy of the
  project (.dvc/tmp/exps/), runs the stages there, and records the result as an experiment (a git ref: `dvc exp
  show`, `dvc exp apply <name>`). Two such runs started together never share a folder, so they cannot overwrite each
  other's outputs; stages already computed anywhere with the same inputs are restored from DVC's run cache instead
  of re-run. MLflow still tracks into the project's store (rarl_core.tracking resolves it from DVC_ROOT).

Both ways: parameters are validated before any work (unknown stage or params key, bad value, unreachable MLflow
server); the flow opens the MLflow parent run (tagged with the Prefect flow run and the DVC experiment) and passes
its id to every stage in RARL_PARENT_RUN_ID, so concurrent runs never share a parent; network stages (judge) are
retried after a delay, training stages never automatically; every stage has a time limit; a failed run re-run with
the same parameters picks up after the last finished stage (DVC skips or restores it, training resumes from its
checkpoint). The report is published as a flow-run artifact, and a screenshot of the HTML report in headless
Chromium is logged to the report stage's MLflow run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.params import NETWORK_STAGES, ParametersError, RunParameters, describe, stage_base, validate_against
from flows.runner import StageFailed, run_dvc

PROJECT_DIR = Path(__file__).resolve().parent.parent

__all__ = ["train", "execute", "StageFailed", "ParametersError"]


def enter_project(project_dir: str | None) -> Path:
    """Work from the project root: the parameter, else RARL_PROJECT_DIR, else the working directory when it is a
    project (a deployment's pull step puts the flow run there), else the checkout this file belongs to."""
    here = Path.cwd()
    is_project = (here / "dvc.yaml").is_file() and (here / "params.yaml").is_file()
    os.chdir(project_dir or os.environ.get("RARL_PROJECT_DIR") or (here if is_project else PROJECT_DIR))
    return Path.cwd()


def stage_env(parent_run_id: str) -> dict[str, str]:
    """The environment of DVC and the stage commands: the project's interpreter first on PATH, offline-safe
    settings (LiteLLM's local cost map), the MLflow parent run. Built inside each task, never passed as a task
    parameter, so that no API key from the environment reaches Prefect's records."""
    from rarl_core.tracking import PARENT_ENV
    from tasks.common import pipeline_env

    env = pipeline_env()
    env[PARENT_ENV] = parent_run_id
    env.setdefault("TQDM_MININTERVAL", "10")  # progress bars every 10 s, not every batch, in the Prefect log
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _is_network(stage: str) -> bool:
    return stage_base(stage) in NETWORK_STAGES


def _retry_network_failures(task, task_run, state) -> bool:
    """Prefect retry condition: retry only a failure of a network stage (judge), never a training stage."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:
            return False
    return isinstance(exc, StageFailed) and exc.retryable


@task(task_run_name="{stage}", cache_policy=NO_CACHE, persist_result=False, log_prints=False)
def run_stage(stage: str, force: bool, timeout_s: float, parent_run_id: str, comparison_run_id: str | None = None,
              target: str | None = None) -> str:
    """One DVC stage in the workspace: `dvc repro --single-item <stage>` (or `dvc repro <target>`, which runs or
    restores what `stage` needs first); returns what `stage` did: ran | unchanged | restored."""
    from rarl_core.tracking import COMPARISON_ENV

    logger = get_run_logger()
    args = ["repro", *(["--single-item", stage] if target is None else [target]), *(["--force"] if force else [])]
    env = stage_env(parent_run_id) | ({COMPARISON_ENV: comparison_run_id} if comparison_run_id else {})
    result = run_dvc(args, Path.cwd(), env, logger.info, [stage], lambda _: timeout_s, _is_network)
    return result.outcomes[stage].status


@task(task_run_name="experiment {name}", cache_policy=NO_CACHE, persist_result=False, log_prints=False,
      retry_condition_fn=_retry_network_failures)
def run_experiment(name: str, baseline: str, set_args: list[str], targets: list[str] | None, stages: list[str],
                   force: bool, timeouts_s: dict[str, float], parent_run_id: str) -> dict[str, str]:
    """The run as one DVC experiment in a temporary workspace; returns each stage's outcome (read from the
    experiment's dvc.lock and the stages' own records)."""
    logger = get_run_logger()
    args = ["exp", "run", "--temp", "--name", name, *(["--force"] if force else [])]
    for item in set_args:
        args += ["-S", item]
    args += list(targets or [])
    default = RunParameters().timeout_for  # timeouts_s holds the limit of every stage of the plan

    def experiment_lock(lock: str) -> str | None:
        try:
            return _git("show", f"{experiment_ref(baseline, name)}:{lock}")
        except subprocess.CalledProcessError:
            return None

    result = run_dvc(args, Path.cwd(), stage_env(parent_run_id), logger.info, stages,
                     lambda stage: timeouts_s.get(stage) or default(stage), _is_network, locks_after=experiment_lock)
    return {stage: outcome.status for stage, outcome in result.outcomes.items()}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()


def experiment_ref(baseline: str, name: str) -> str:
    """Where DVC keeps an experiment: refs/exps/<baseline[:2]>/<baseline[2:]>/<name>."""
    return f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}"


def prepare_experiment(name: str) -> str:
    """Checks before an isolated run: a git commit to branch from, a free experiment name. Returns the baseline."""
    try:
        baseline = _git("rev-parse", "HEAD")
    except (subprocess.CalledProcessError, FileNotFoundError):
        raise ParametersError(
            "an isolated run (overrides or an experiment name) is a DVC experiment, which needs the project in git "
            "with at least one commit: git init && git add -A && git commit -m init"
        ) from None
    if _git("for-each-ref", "--format=%(refname)", experiment_ref(baseline, name)):
        raise ParametersError(
            f"experiment {name!r} already exists for commit {baseline[:7]}: choose another name, or remove it first "
            f"(dvc exp remove {name})"
        )
    return baseline


def open_parent_run(cfg, params: RunParameters, experiment: str | None, params_hash: str) -> str:
    """The pipeline's MLflow parent run, tagged with what started it; also closes runs a killed process left open."""
    import mlflow
    from prefect.runtime import flow_run

    from rarl_core import tracking

    closed = tracking.close_orphan_runs(cfg.mlflow)
    run_id = tracking.start_pipeline_run(cfg.mlflow, params_hash,
                                         run_name=f"pipeline: {experiment}" if experiment else "pipeline")
    tags = {**tracking.process_tags(), "rarl.orchestrator": "prefect", "rarl.flow_parameters": describe(params)[:5000]}
    if flow_run.id:
        tags |= {"rarl.prefect.flow_run_id": str(flow_run.id), "rarl.prefect.flow_run_name": str(flow_run.name)}
    if experiment:
        tags["rarl.dvc_experiment"] = experiment
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    if closed:
        get_run_logger().warning(f"marked {len(closed)} MLflow run(s) KILLED: their process had died ({closed})")
    return run_id


def read_output(path: str, experiment: tuple[str, str] | None) -> str | None:
    """A file the pipeline wrote: from the workspace, or from the experiment's commit for an isolated run."""
    if experiment is None:
        return Path(path).read_text() if Path(path).is_file() else None
    baseline, name = experiment
    rel = os.path.relpath(Path(path).resolve(), Path.cwd())
    try:
        return _git("show", f"{experiment_ref(baseline, name)}:{rel}") + "\n"
    except subprocess.CalledProcessError:
        return None


def report_run_id(cfg, parent_run_id: str, stage: str) -> str | None:
    """The MLflow run of this pipeline run's report stage."""
    import mlflow

    from rarl_core.tracking import experiment_id

    experiment = experiment_id(cfg.mlflow)
    found = mlflow.MlflowClient().search_runs(
        [experiment], f"tags.`rarl.stage` = '{stage}' and tags.`mlflow.parentRunId` = '{parent_run_id}'",
        order_by=["attributes.start_time DESC"], max_results=1)
    return found[0].info.run_id if found else None


def screenshot_report(cfg, parent_run_id: str, experiment: tuple[str, str] | None, html_path: str,
                      stage: str) -> dict | None:
    """Render the HTML report in headless Chromium and log the screenshot to the MLflow run of `stage`."""
    from flows.browser import check_report, find_chromium

    logger = get_run_logger()
    html = read_output(html_path, experiment)
    if html is None:
        return None
    if not find_chromium():
        logger.warning("no Chromium installed (apt-get install -y chromium): the report screenshot is skipped")
        return None
    with tempfile.TemporaryDirectory(prefix="rarl-report-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html, encoding="utf-8")
        try:
            check = check_report(page, Path(tmp) / "report-screenshot.png")
        except Exception as err:  # a screenshot is a nicety: never fail a finished pipeline for it
            logger.warning(f"the report screenshot failed: {err}")
            return None
        if run_id := report_run_id(cfg, parent_run_id, stage):
            import mlflow

            mlflow.MlflowClient().log_artifact(run_id, str(check.screenshot), "report")
    if check.console_errors or check.broken_images:
        logger.warning(f"the HTML report shows problems in Chromium: console errors {check.console_errors}, "
                       f"figures that did not decode {check.broken_images}")
    return {"console_errors": check.console_errors, "images": len(check.images), "broken": len(check.broken_images)}


def execute(params: RunParameters, project_dir: str | None = None) -> str:
    """The body shared by `rarl/train`, `rarl/evaluate` and `rarl/compare`."""
    from prefect.runtime import flow_run

    from rarl_core import tracking
    from tasks.common import params_hash

    logger = get_run_logger()
    project = enter_project(project_dir)
    plan = validate_against(params, project)  # ParametersError: nothing has run
    cfg = plan["cfg"]
    tracking.check_reachable(cfg.mlflow)  # TrackingUnreachable: a clear error before any training
    experiment = None
    if params.is_isolated:
        name = params.experiment or str(flow_run.name or "") or f"rarl-{os.getpid()}"
        experiment = (prepare_experiment(name), name)
        untracked = _git("ls-files", "--others", "--exclude-standard").splitlines()
        if untracked:
            logger.warning(f"not part of the experiment (untracked by git; `git add` them to include): {untracked[:20]}")
        logger.info(f"DVC experiment {name!r} on commit {experiment[0][:7]} with {plan['set_args'] or 'no overrides'}")
    digest = params_hash(project / "params.yaml") if not experiment else params_hash_of(plan["set_args"], project)
    parent = open_parent_run(cfg, params, experiment[1] if experiment else None, digest)
    logger.info(f"MLflow parent run {parent} in {tracking.tracking_uri(cfg.mlflow)} (experiment {cfg.mlflow.experiment})")
    outcomes: dict[str, str] = {}
    try:
        if experiment:
            outcomes = run_experiment.with_options(retries=params.network_retries,
                                                   retry_delay_seconds=params.retry_delay_s)(
                experiment[1], experiment[0], plan["set_args"], plan["targets"], plan["stages"], params.force,
                {s: params.timeout_for(s) for s in plan["stages"]}, parent)
        else:
            for stage in plan["stages"]:
                retries = params.network_retries if _is_network(stage) else 0
                outcomes[stage] = run_stage.with_options(retries=retries, retry_delay_seconds=params.retry_delay_s)(
                    stage, params.force, params.timeout_for(stage), parent)
    except BaseException:
        close_parent_run(cfg, parent, None)
        raise
    markdown = publish(cfg, params, experiment, parent, outcomes)
    close_parent_run(cfg, parent, outcomes)
    return markdown


def close_parent_run(cfg, parent: str, outcomes: dict[str, str] | None) -> None:
    """End the run's MLflow parent run: FAILED (`outcomes` None: a stage failed; a tracking error never hides that
    failure), else FINISHED, and then deleted when every stage was up to date (an empty run reads as one that did
    something). It is ended before it is deleted: MLflow keeps a deleted run's status, and one restored from the
    UI's "Deleted" view would otherwise show as running forever."""
    from rarl_core import tracking

    logger = get_run_logger()
    try:
        if outcomes is None:
            tracking.end_pipeline_run(cfg.mlflow, parent, "FAILED")
            return
        tracking.end_pipeline_run(cfg.mlflow, parent, "FINISHED")
        if all(o == "unchanged" for o in outcomes.values()) and tracking.drop_if_empty(cfg.mlflow, parent):
            logger.info("every stage was up to date: no MLflow parent run is kept for this run")
    except Exception as err:
        if outcomes is not None:
            raise
        logger.warning(f"could not mark the MLflow parent run FAILED: {err}")


def publish(cfg, params: RunParameters, experiment: tuple[str, str] | None, parent: str,
            outcomes: dict[str, str]) -> str:
    """The run's Prefect artifacts (what each stage did; the report) and the report's screenshot in MLflow."""
    report_md, report_html, report_stage = params.report(cfg)
    report = read_output(report_md, experiment)
    create_table_artifact([{"stage": s, "outcome": o} for s, o in outcomes.items()], key="rarl-stages",
                          description="What each DVC stage did in this run")
    markdown = report or "No report yet: run the evaluate and report stages."
    if experiment:
        markdown = (f"DVC experiment `{experiment[1]}` (commit {experiment[0][:7]}): `dvc exp show`, "
                    f"`dvc exp apply {experiment[1]}`\n\n") + markdown
    create_markdown_artifact(markdown, key=f"rarl-{report_stage}", description="Base vs SFT vs GRPO comparison")
    if report is not None:
        screenshot_report(cfg, parent, experiment, report_html, report_stage)
    return markdown


def params_hash_of(set_args: list[str], project: Path) -> str:
    """Identifies an experiment's configuration (params.yaml and its overrides) in the parent run's tags."""
    import hashlib

    return hashlib.sha256((project / "params.yaml").read_bytes() + json.dumps(set_args).encode()).hexdigest()[:16]


@flow(name="rarl", log_prints=True)
def train(params: RunParameters = RunParameters(), project_dir: str | None = None) -> str:
    """Run the RARL pipeline (all stages by default); overrides make the run an isolated DVC experiment."""
    return execute(params, project_dir)


if __name__ == "__main__":
    train()
    sys.exit(0)
