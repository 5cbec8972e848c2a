"""Stage report: the comparison table (Markdown), logged to MLflow; closes the pipeline's parent run."""

import json
import os
from pathlib import Path

from tasks.common import StageContext, log_artifacts, require, stage_main


def run(cfg, ctx: StageContext) -> dict:
    from rarl_core import tracking
    from rarl_core.io import atomic_file
    from rarl_core.report import generalisation_gaps, render_markdown

    evaluation = json.loads(require(cfg.paths.eval_metrics, "evaluate").read_text())
    training = {
        stage: json.loads(Path(path).read_text())
        for stage, path in (("sft", cfg.paths.sft_metrics), ("grpo", cfg.paths.grpo_metrics))
        if Path(path).is_file()
    }
    markdown = render_markdown(evaluation, training, cfg.data.in_domain, cfg.data.unseen)
    with atomic_file(cfg.paths.report) as handle:
        handle.write(markdown)
    log_artifacts(cfg, cfg.paths.report, "report")
    print(markdown)
    if not os.environ.get(tracking.PARENT_ENV):
        # Run by plain `dvc repro`: the last stage closes the parent run it found. An orchestrator that opened the
        # parent run (`rarl run`, the Prefect flow) closes it itself.
        tracking.end_pipeline_run(cfg.mlflow, ctx.parent_run_id)
    return {"generalisation_gap": generalisation_gaps(evaluation, cfg.data.in_domain, cfg.data.unseen)}


def main(argv=None) -> int:
    return stage_main("report", run, ("data",), argv)


if __name__ == "__main__":
    raise SystemExit(main())
