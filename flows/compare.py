"""The `rarl/compare` deployment: does RARL beat RL and SFT? Seeds, confidence intervals, an equal-compute control.

The comparison is compare/dvc.yaml: a DVC stage per unit (each GRPO variant and the SFT control, per seed) and per
unit's evaluation, then the analysis stage (tasks/compare.py; rarl_core/compare.py says what is compared and why).
This flow runs it three ways:

* overrides (or an experiment name): one isolated DVC experiment, like every other deployment (`dvc exp run --temp`);
* no overrides: the data, augmentation and warm-up first (flows/pipeline.py's stages, skipped when up to date), then
  the units level by level (the GRPO runs and the warm-up's evaluation; then each seed's control and the GRPO runs'
  evaluations; then the controls' evaluations), each a Prefect task, then the analysis;
* `fan_out: true`: the same, but each unit is a flow run of the `rarl/compare-unit` deployment, which any worker of
  its work pool picks up, so units of one level run at once on several GPUs or hosts. Each worker works in its own
  checkout of the project (git clone), all of them share a DVC remote (`dvc remote add -d ...`, S3 or SSH across
  hosts) and one MLflow server (mlflow.tracking_uri): a unit pulls what it needs from the remote (`dvc pull
  --run-cache`, then `dvc repro --pull <unit>`: the units it depends on are restored from DVC's run cache, not run
  again) and pushes its outputs and its run-cache entry back; the analysis, here, restores every unit the same way.

Every unit's MLflow run is nested under one comparison run, opened here before any unit starts (RARL_COMPARISON_RUN_ID).

    prefect deployment run rarl/compare
    prefect deployment run rarl/compare --param params='{"fan_out": true}'
    prefect deployment run rarl/compare --param params='{"overrides": {"compare.seeds": [0, 1, 2, 3, 4]}}'
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.params import COMPARE_PIPELINE, COMPARE_STAGE, CompareParameters, validate_against
from flows.pipeline import close_parent_run, enter_project, execute, open_parent_run, publish, run_stage, stage_env
from flows.runner import StageFailed, run_dvc

UNIT_DEPLOYMENT = "rarl/compare-unit"


def dvc_sync(args: list[str], env: dict[str, str], log) -> None:
    """`dvc pull` / `dvc push` with the run cache: how units, and their lineage, travel between hosts."""
    run_dvc(args, Path.cwd(), env, log, [], lambda _: 3600.0, lambda _: False)


@task(task_run_name="{stage}", cache_policy=NO_CACHE, persist_result=False, log_prints=False)
def run_remote_unit(stage: str, timeout_s: float, parent_run_id: str, comparison_run_id: str) -> str:
    """One unit as a flow run of `rarl/compare-unit` on whichever worker of its pool is free; waits for it."""
    from prefect.deployments import run_deployment

    run = run_deployment(UNIT_DEPLOYMENT, parameters={"stage": stage, "timeout_s": timeout_s,
                                                      "parent_run_id": parent_run_id,
                                                      "comparison_run_id": comparison_run_id},
                         timeout=None, as_subflow=True)
    if not run.state.is_completed():
        raise StageFailed(stage, f"unit {stage} ended {run.state.name} on its worker: {run.state.message}")
    return "ran"


@flow(name="rarl", log_prints=True)
def compare_unit(stage: str, timeout_s: float, parent_run_id: str, comparison_run_id: str,
                 project_dir: str | None = None) -> str:
    """`rarl/compare-unit`: one unit of the comparison in this worker's checkout, its inputs pulled from the DVC remote
    and restored from the run cache, its outputs pushed back."""
    from rarl_core.tracking import COMPARISON_ENV

    logger = get_run_logger()
    checkout = enter_project(project_dir)
    logger.info(f"unit {stage} in checkout {checkout}")
    env = stage_env(parent_run_id) | {COMPARISON_ENV: comparison_run_id}
    dvc_sync(["pull", "--run-cache", "--allow-missing"], env, logger.info)
    run_dvc(["repro", "--pull", stage], Path.cwd(), env, logger.info, [stage], lambda _: timeout_s, lambda _: False)
    dvc_sync(["push", "--run-cache"], env, logger.info)
    return stage


@flow(name="rarl", log_prints=True)
def compare(params: CompareParameters = CompareParameters(), project_dir: str | None = None) -> str:
    """Run the comparison of params.yaml `compare:`; publish its report (verdict per claim, intervals, diagnostics)."""
    if params.is_isolated:
        return execute(params, project_dir)
    from rarl_core import tracking
    from tasks.common import params_hash

    logger = get_run_logger()
    project = enter_project(project_dir)
    plan = validate_against(params, project)
    cfg = plan["cfg"]
    tracking.check_reachable(cfg.mlflow)
    parent = open_parent_run(cfg, params, None, params_hash(project / "params.yaml"))
    comparison = tracking.comparison_run_id(cfg.mlflow, parent)
    env = stage_env(parent) | {tracking.COMPARISON_ENV: comparison}
    outcomes: dict[str, str] = {}
    try:
        for stage in plan["upstream"]:  # data, augmentation, warm-up: in this workspace, skipped when up to date
            outcomes[stage] = run_stage(stage, params.force, params.timeout_for(stage), parent)
        if params.fan_out:
            dvc_sync(["push", "--run-cache"], env, logger.info)  # the warm-up, for the workers to pull
        for level in plan["levels"]:
            if params.fan_out:
                futures = {s: run_remote_unit.submit(s, params.timeout_for(s), parent, comparison) for s in level}
            else:
                futures = {s: run_stage.submit(s, params.force, params.timeout_for(s), parent, comparison)
                           for s in level}
            outcomes |= {stage: future.result() for stage, future in futures.items()}
        if params.fan_out:
            dvc_sync(["pull", "--run-cache", "--allow-missing"], env, logger.info)
        # fanned out, the units are in the run cache, not in this workspace: restore them all, then the analysis
        outcomes[COMPARE_STAGE] = run_stage(COMPARE_STAGE, params.force and not params.fan_out,
                                            params.timeout_for(COMPARE_STAGE), parent, comparison,
                                            target=COMPARE_PIPELINE if params.fan_out else None)
    except BaseException:
        close_parent_run(cfg, parent, None)
        raise
    markdown = publish(cfg, params, None, parent, outcomes)
    close_parent_run(cfg, parent, outcomes)
    return markdown


if __name__ == "__main__":
    compare()
