"""Stage judge: every prediction of the evaluate stage scored by the judge of params.yaml's `judge:` section.

Scores go to `<paths.judge>/<model>/<dataset>/<prompt>.jsonl`, summaries to `<paths.metrics>/judge.json` and into
each model's `eval: <model>` MLflow run as `judge/<dataset>/<prompt>/<correctness|reasoning>`. The judge cache
(judge.cache_path) is not a DVC output, so DVC never deletes it: re-running the stage on unchanged predictions makes
zero judge calls. The stage fails, after writing every score, when a file had more unscorable rows than
judge.max_failure_rate allows. (`rarl judge PREDICTIONS --out SCORES` scores one file: rarl/cli.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.common import StageContext, StageError, log_artifacts, metrics_file, require, stage_main


class JudgeStageFailed(StageError):
    """Some prediction files had more unscorable rows than judge.max_failure_rate allows; scores were written."""


def log_to_eval_runs(cfg, parent_id: str, summary: dict[str, Any], out_dir: Path) -> None:
    """Judge means as judge/<dataset>/<prompt>/<score> and the scores as artifacts, in each `eval: <model>` run."""
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from rarl_core.registry import find_run

    for model, per_set in summary["models"].items():
        run = find_run(cfg, parent_id, {"rarl.stage": "evaluate", "rarl.model": model})
        if run is None:
            print(f"judge: no MLflow run 'eval: {model}' found; its judge metrics are in judge.json only")
            continue
        now = int(time.time() * 1000)
        metrics = [Metric(f"judge/{dataset}/{prompt}/{kind}", cell[f"mean_{kind}"], now, 0)
                   for dataset, per_prompt in per_set.items() for prompt, cell in per_prompt.items()
                   for kind in ("correctness", "reasoning") if cell[f"mean_{kind}"] is not None]
        client = MlflowClient()
        client.log_batch(run.info.run_id, metrics=metrics)
        client.set_tag(run.info.run_id, "rarl.judge", summary["judge"])
        client.log_artifacts(run.info.run_id, str(out_dir / model), "judge")


def run(cfg, ctx: StageContext) -> dict:
    """Score, summarise, log; fail (after writing everything) when a file exceeded the threshold."""
    import shutil

    from rarl_core.files import write_json
    from rarl_core.judge import judge_predictions

    out_dir = Path(cfg.paths.judge)
    shutil.rmtree(out_dir, ignore_errors=True)  # a stage output, replaced whole (DVC does the same before a run)
    summary, failures = judge_predictions(cfg.judge, require(cfg.paths.predictions, "evaluate"), out_dir,
                                          cfg.model.name_or_path)
    if summary["same_family"]:
        print(f"warning: the judge {cfg.judge.model} is of the evaluated models' family ({summary['same_family']}): "
              "it may favour their outputs; use a judge from another family")
    write_json(metrics_file(cfg, "judge"), summary)
    print(f"judge [{summary['judge']}]: {summary['run']['calls']} calls, {summary['run']['cache_hits']} cache hits")
    if failures:
        raise JudgeStageFailed(f"{len(failures)} prediction file(s) failed the judge; the first: {failures[0]}")
    log_to_eval_runs(cfg, ctx.parent_run_id, summary, out_dir)
    log_artifacts(cfg, metrics_file(cfg, "judge"), "judge")
    return {f"{model}/{dataset}/{prompt}/{kind}": cell[f"mean_{kind}"]
            for model, per_set in summary["models"].items() for dataset, per_prompt in per_set.items()
            for prompt, cell in per_prompt.items() for kind in ("correctness", "reasoning")
            if cell[f"mean_{kind}"] is not None} | {"calls": summary["run"]["calls"]}


def main(argv: list[str] | None = None) -> int:
    return stage_main("judge", run, ("judge",), argv)


if __name__ == "__main__":
    raise SystemExit(main())
