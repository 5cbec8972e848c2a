"""Stage evaluate: base, SFT, each GRPO variant (RL, RARL) and any extra model x in-domain and unseen sets x prompts.

Each model gets its own MLflow run (`eval: <model>`, under the pipeline's parent, tagged rarl.model) with metrics
named `eval/<dataset>/<prompt>/<metric>`, so the MLflow compare view lines the models up side by side; the judge
stage later adds `judge/<dataset>/<prompt>/<score>` to the same runs. eval.json (a DVC metrics file) holds every
cell, the majority baselines, the generalisation gaps and paired differences between the trained models.
"""

from pathlib import Path

from tasks.common import StageContext, log_artifacts, metrics_file, numeric, require, stage_main


def require_models(cfg) -> None:
    """Fail before any generation when a model folder is missing, naming the stage (or setting) that provides it."""
    require(cfg.paths.sft_model, "sft")
    for name in cfg.grpo.variants:
        require(Path(cfg.paths.merged) / name, f"merge@{name}")
    for name, path in cfg.evaluate.extra_models.items():
        if not Path(path).exists():
            raise FileNotFoundError(f"evaluate.extra_models.{name}: {path} does not exist")


def run(cfg, ctx: StageContext) -> dict:
    import mlflow

    from rarl_core.evaluate import baselines, eval_sets, evaluate_model, model_paths, paired_comparisons, training_rows
    from rarl_core.files import atomic_dir, write_json, write_jsonl
    from rarl_core.metrics import generalisation_gaps, question_means
    from rarl_core.prompts import load_templates
    from rarl_core.tracking import log_dataset

    sets = eval_sets(cfg)  # names a missing prepare stage first
    models = model_paths(cfg)
    require_models(cfg)
    templates = load_templates()
    result = {"baselines": baselines(sets, training_rows(cfg)), "models": {}}
    scores: dict = {}
    with atomic_dir(cfg.paths.predictions) as tmp:
        for model, path in models.items():
            def save(dataset, prompt, records, control, model=model):
                if control:  # beside, not among, the predictions the judge scores: <model>/<dataset>/<prompt>.jsonl
                    write_jsonl(tmp / model / dataset / "controls" / control / f"{prompt}.jsonl", records)
                    return
                write_jsonl(tmp / model / dataset / f"{prompt}.jsonl", records)
                scores.setdefault(model, {}).setdefault(dataset, {})[prompt] = question_means(records)

            with ctx.child_run(cfg, f"eval: {model}", {"rarl.stage": "evaluate", "rarl.model": model}):
                mlflow.log_params({"model": model, "model_path": path, **cfg.evaluate.decoding()})
                for dataset, frame in sets.items():
                    log_dataset(frame, str(Path(cfg.paths.prepared) / dataset),
                                f"{dataset}/test", "evaluation")
                metrics = evaluate_model(cfg, model, path, sets, templates, save)
                mlflow.log_metrics(numeric(metrics, "eval/"))
                mlflow.log_metrics(numeric(result["baselines"], "baseline/"))
                log_artifacts(cfg, tmp / model, "predictions")
            result["models"][model] = metrics
    result["gaps"] = generalisation_gaps(result["models"], cfg.data.in_domain, cfg.data.unseen)
    result["paired"] = paired_comparisons(scores, [m for m in models if m != "base"], cfg.evaluate.n_resamples)
    write_json(metrics_file(cfg, "eval"), result)
    return {
        f"{model}/{dataset}/{prompt}/accuracy": m["accuracy"]
        for model, per_set in result["models"].items()
        for dataset, per_prompt in per_set.items()
        for prompt, m in per_prompt.items()
    }


def main(argv=None) -> int:
    return stage_main("evaluate", run, ("model", "evaluate"), argv)


if __name__ == "__main__":
    raise SystemExit(main())
