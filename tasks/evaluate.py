"""Stage evaluate: base, SFT and GRPO models x in-domain and unseen sets x inference prompts.

Each model gets its own MLflow run (`eval: <model>`, under the pipeline's parent) with metrics named
`eval/<dataset>/<prompt>/<metric>`, so the MLflow compare view lines the models up side by side.
"""

from pathlib import Path

from tasks.common import StageContext, log_artifacts, numeric, require, stage_main


def model_variants(cfg) -> dict[str, str]:
    return {"base": cfg.model.name_or_path, "sft": cfg.paths.sft_model, "grpo": cfg.paths.grpo_model}


def run(cfg, ctx: StageContext) -> dict:
    import mlflow

    from rarl_core.data import load_split
    from rarl_core.evaluate import baselines, evaluate_model
    from rarl_core.io import atomic_dir, write_json, write_jsonl
    from rarl_core.prompts import load_templates

    prepared = require(cfg.paths.prepared, "prepare")
    for path, stage in ((cfg.paths.sft_model, "sft"), (cfg.paths.grpo_model, "merge")):
        require(path, stage)
    sets = {}
    for name in [*cfg.data.in_domain, *cfg.data.unseen]:
        frame = load_split(prepared, name, "test")
        sets[name] = frame.head(cfg.evaluate.max_questions) if cfg.evaluate.max_questions else frame
    templates = load_templates()
    result = {"baselines": baselines(sets), "models": {}}
    with atomic_dir(cfg.paths.predictions) as tmp:
        for variant, path in model_variants(cfg).items():
            def save(dataset, prompt, records, variant=variant):
                write_jsonl(tmp / variant / dataset / f"{prompt}.jsonl", records)

            with ctx.child_run(cfg, f"eval: {variant}", {"rarl.stage": "evaluate", "rarl.model": variant}):
                mlflow.log_params({"model": variant, "model_path": path})
                metrics = evaluate_model(cfg, path, sets, templates, save)
                mlflow.log_metrics(numeric(metrics, "eval/"))
                mlflow.log_metrics(numeric(result["baselines"], "baseline/"))
                log_artifacts(cfg, tmp / variant, "predictions")
            result["models"][variant] = metrics
    write_json(cfg.paths.eval_metrics, result)
    return {
        f"{variant}/{dataset}/{prompt}/accuracy": m["accuracy"]
        for variant, per_set in result["models"].items()
        for dataset, per_prompt in per_set.items()
        for prompt, m in per_prompt.items()
    }


def main(argv=None) -> int:
    return stage_main("evaluate", run, ("model", "evaluate"), argv)


if __name__ == "__main__":
    raise SystemExit(main())
