"""MLflow across stages: finding another stage's run, reading training curves, and the model registry.

Stages run in separate processes and DVC skips those whose inputs did not change, so a stage that needs another
stage's run (the judge logging into `eval: <model>`, the report reading GRPO reward curves and registering models)
looks it up by its tags: under the current pipeline run when that stage ran in it, else the latest finished one in
the experiment (the run whose outputs DVC kept).

Registry: one registered model (report.registered_model) with one version per trained model (sft and each GRPO
variant), created from the `model` artifact its stage logged (`MlflowClient.create_model_version` with the artifact
URI as source: `mlflow.register_model("runs:/...")` refuses a plain artifact folder). Each version carries the alias
of its model's name, and the alias `champion` moves to the version elected by the report's rule. Versions are reused
when the same run's artifact is registered again, so re-running the report does not pile up duplicates.
"""

from __future__ import annotations

import re

from rarl_core.config import Config
from rarl_core.tracking import experiment_id

CHAMPION_ALIAS = "champion"
_RESERVED_ALIAS = re.compile(r"[vV]\d+|latest", re.IGNORECASE)  # MLflow keeps these alias names for itself


def find_run(cfg: Config, parent_id: str | None, tags: dict[str, str]):
    """The run with these tags under `parent_id`, else the latest finished one in the experiment; None if neither."""
    import mlflow

    experiment = experiment_id(cfg.mlflow)  # also points MLflow at the configured store
    client = mlflow.MlflowClient()
    where = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    scopes = ([f"tags.`mlflow.parentRunId` = '{parent_id}'"] if parent_id else []) + ["attributes.status = 'FINISHED'"]
    for scope in scopes:
        found = client.search_runs([experiment], f"{where} and {scope}",
                                   order_by=["attributes.start_time DESC"], max_results=1)
        if found:
            return found[0]
    return None


def model_run_tags(model: str, cfg: Config) -> dict[str, str] | None:
    """Tags of the stage run that logged `model`'s weights as its `model` artifact; None for a model no stage trains."""
    if model == "sft":
        return {"rarl.stage": "sft"}
    if model in cfg.grpo.variants:
        return {"rarl.stage": "merge", "rarl.variant": model}
    return None


def reward_history(cfg: Config, parent_id: str | None, variant: str) -> dict[str, list[tuple[int, float]]]:
    """Per-step training curves of `grpo: <variant>`: the total `reward` and each `rewards/<name>/mean`, as TRL
    logged them through MLflow; {} when no such run is found."""
    run = find_run(cfg, parent_id, {"rarl.stage": "grpo", "rarl.variant": variant})
    if run is None:
        return {}
    import mlflow

    client = mlflow.MlflowClient()
    keys = sorted(k for k in run.data.metrics if k == "reward" or re.fullmatch(r"rewards/[^/]+/mean", k))
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)) for key in keys}


def register_models(cfg: Config, parent_id: str | None, models: list[str], champion: str | None) -> dict[str, str]:
    """Register each trained model's logged weights as a version of cfg.report.registered_model, alias each version
    with its model's name, and move `champion` to `champion`'s version. Returns {model: version}; a model whose stage
    logged no `model` artifact (mlflow.log_models: false, or an extra model) is left out."""
    import mlflow
    from mlflow.exceptions import MlflowException

    experiment_id(cfg.mlflow)
    client = mlflow.MlflowClient()
    name = cfg.report.registered_model
    versions: dict[str, str] = {}
    for model in models:
        tags = model_run_tags(model, cfg)
        run = find_run(cfg, parent_id, tags) if tags else None
        if run is None or "model" not in {a.path for a in client.list_artifacts(run.info.run_id)}:
            continue
        if not versions:
            try:
                client.get_registered_model(name)
            except MlflowException:
                client.create_registered_model(name, description="RARL models; alias `champion` = best on unseen sets")
        versions[model] = _version_for(client, name, run, model)
        if not _RESERVED_ALIAS.fullmatch(model):
            client.set_registered_model_alias(name, model, versions[model])
    if champion in versions:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, versions[champion])
    return versions


def _version_for(client, name: str, run, model: str) -> str:
    """The version registered from this run's `model` artifact, created on first use."""
    source = f"{run.info.artifact_uri}/model"
    for version in client.search_model_versions(f"name = '{name}' and run_id = '{run.info.run_id}'"):
        if version.source == source:
            return str(version.version)
    created = client.create_model_version(name, source, run_id=run.info.run_id, tags={"rarl.model": model})
    return str(created.version)
