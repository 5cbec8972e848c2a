"""Stage report: the comparison (Markdown + self-contained HTML + plot data), the champion and the model registry.

Reads eval.json, judge.json and the training summaries, and the GRPO reward curves from MLflow; elects the champion
by the rule written into the report; registers the trained models in the MLflow model registry and moves the alias
`champion`; logs the report to MLflow; closes the pipeline's parent run when run by plain `dvc repro`.
"""

import json
import os
from pathlib import Path

from rarl_core.config import ConfigError
from tasks.common import StageContext, log_artifacts, metrics_file, require, stage_main


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def run(cfg, ctx: StageContext) -> dict:
    from rarl_core import registry, tracking
    from rarl_core.files import atomic_file
    from rarl_core.plots import plot_tables, write_plot_data
    from rarl_core.report import (ReportInputs, choose_champion, comparison_rows, read_inputs, render_html,
                                  render_markdown)

    if cfg.report.champion_prompt not in cfg.evaluate.prompts:
        raise ConfigError(f"report.champion_prompt {cfg.report.champion_prompt!r} is not in evaluate.prompts "
                          f"({', '.join(cfg.evaluate.prompts)})")
    require(metrics_file(cfg, "eval"), "evaluate")
    evaluation, judge = read_inputs(cfg)
    trained = ["sft", *cfg.grpo.variants]
    candidates = [m for m in trained if m in evaluation["models"]]
    champion = choose_champion(evaluation, candidates, cfg.data.in_domain, cfg.data.unseen, cfg.report.champion_prompt)
    stages = ["sft", *(f"grpo-{name}" for name in cfg.grpo.variants)]
    inputs = ReportInputs(
        evaluation=evaluation, in_domain=cfg.data.in_domain, unseen=cfg.data.unseen,
        champion_prompt=cfg.report.champion_prompt, candidates=candidates, champion=champion,
        judge=judge,
        training={s: read_json(metrics_file(cfg, s)) for s in stages if metrics_file(cfg, s).is_file()},
        rewards={v: h for v in cfg.grpo.variants if (h := registry.reward_history(cfg, ctx.parent_run_id, v))},
        registered_model=cfg.report.registered_model,
        registered=registry.register_models(cfg, ctx.parent_run_id, candidates, champion),
        decoding=", ".join(f"{k}={v}" for k, v in cfg.evaluate.decoding().items()),
    )
    import mlflow

    mlflow.set_tag("rarl.champion", champion or "none")
    markdown = render_markdown(inputs)
    with atomic_file(cfg.paths.report) as handle:
        handle.write(markdown)
    with atomic_file(cfg.paths.report_html) as handle:
        handle.write(render_html(inputs))
    rows = comparison_rows(evaluation, cfg.data.in_domain, cfg.data.unseen, judge)
    write_plot_data(Path(cfg.paths.plots), plot_tables(rows, evaluation.get("gaps", {}), inputs.rewards))
    for path in (cfg.paths.report, cfg.paths.report_html, cfg.paths.plots):
        log_artifacts(cfg, path, "report")
    print(markdown)
    if not os.environ.get(tracking.PARENT_ENV):
        # Run by plain `dvc repro`: the last stage closes the parent run it found. An orchestrator that opened the
        # parent run (`rarl run`, the Prefect flow) closes it itself.
        tracking.end_pipeline_run(cfg.mlflow, ctx.parent_run_id)
    return {"champion": champion, "registered": inputs.registered, "gaps": evaluation.get("gaps", {})}


def main(argv=None) -> int:
    return stage_main("report", run, ("data", "report"), argv)


if __name__ == "__main__":
    raise SystemExit(main())
