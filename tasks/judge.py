"""`rarl judge PREDICTIONS --out SCORES`: score predictions with the LLM judge (or the offline rubric).

A thin adapter: settings come from the ``judge:`` section of params.yaml (so DVC tracks them), ``--model`` and
``--api-base`` override it for one run, and all the work is in :mod:`rarl_core.judge`.

``python -m tasks.judge --stage [--params P]`` is the pipeline's judge stage (dvc.yaml): every prediction file of the
evaluate stage is scored into ``<paths.judge>/<model>/<dataset>/<prompt>.jsonl``, summaries go to
``<paths.metrics>/judge.json`` and into each model's ``eval: <model>`` MLflow run as ``judge/<dataset>/<prompt>/
<correctness|reasoning>``. The judge cache (judge.cache_path) is not a DVC output, so DVC never deletes it: re-running
the stage on unchanged predictions makes zero judge calls.

Exit codes: 0 done; 1 too many rows could not be scored (the scores file is still written); 2 bad input or config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from rarl_core.judge import JudgeConfig, JudgeFailed, judge_file, summarize_scores

DEFAULT_PARAMS = Path("params.yaml")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rarl judge", description=__doc__.split("\n")[0])
    p.add_argument("predictions", metavar="PREDICTIONS", type=Path,
                   help="JSONL with id, question, answer (reference) and completion per line")
    p.add_argument("--out", required=True, type=Path, metavar="SCORES", help="output JSONL of scores, input order")
    p.add_argument("--model", help="override judge.model ('rubric' or a LiteLLM model string)")
    p.add_argument("--api-base", dest="api_base", help="override judge.api_base (OpenAI-compatible server URL)")
    p.add_argument("--params", type=Path, default=None,
                   help=f"params file with a judge: section (default: {DEFAULT_PARAMS} if it exists)")
    return p


def _judge_section(params: Path | None) -> dict[str, Any]:
    """The ``judge:`` mapping of the params file; {} when no file (default path only) or no section."""
    path = params or DEFAULT_PARAMS
    if not path.exists():
        if params is not None:
            raise ValueError(f"params file not found: {path}")
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    section = data.get("judge") or {}
    if not isinstance(section, dict):
        raise ValueError(f"{path}: 'judge' must be a mapping of settings, got {type(section).__name__}")
    return section


def load_config(args: argparse.Namespace) -> JudgeConfig:
    """params.yaml ``judge:`` section, then command-line overrides, validated by JudgeConfig."""
    section = _judge_section(args.params)
    for key in ("model", "api_base"):
        if getattr(args, key) is not None:
            section[key] = getattr(args, key)
    source = f"{args.params or DEFAULT_PARAMS} judge:"
    return JudgeConfig.from_dict(section, source=source)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--stage" in argv:
        return stage(argv)
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args)
        run = judge_file(args.predictions, args.out, cfg)
    except JudgeFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    except (ValueError, OSError, yaml.YAMLError) as exc:
        print(f"rarl judge: error: {exc}", file=sys.stderr)
        return 2
    s = summarize_scores(run.scores)
    means = ("n/a" if s["mean_correctness"] is None
             else f"correctness {s['mean_correctness']:.3f}, reasoning {s['mean_reasoning']:.3f}")
    print(f"judge [{run.judge}]: {s['n_scored']} scored, {s['n_errors']} errors; {means}; "
          f"{run.calls} calls, {run.cache_hits} cache hits, {run.elapsed_s:.1f}s -> {args.out}")
    return 0



# ----------------------------------------------------------------------------------------------------------------
# The pipeline's judge stage
# ----------------------------------------------------------------------------------------------------------------


class JudgeStageFailed(RuntimeError):
    """Some prediction files had more unscorable rows than judge.max_failure_rate allows; scores were written."""


def cell_summary(scores: list[dict]) -> dict[str, Any]:
    """Judge metrics of one model x dataset x prompt cell: means, counts, and the distribution of each score."""
    from rarl_core.metrics import score_histogram

    return summarize_scores(scores) | {
        "correctness_hist": score_histogram([s["correctness"] for s in scores]),
        "reasoning_hist": score_histogram([s["reasoning"] for s in scores]),
    }


def judge_predictions(cfg, out_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """Score every <model>/<dataset>/<prompt>.jsonl of paths.predictions into `out_dir`; (judge.json, failures)."""
    from tasks.common import require

    predictions = require(cfg.paths.predictions, "evaluate")
    files = sorted(predictions.glob("*/*/*.jsonl"))
    if not files:
        raise FileNotFoundError(f"{predictions} holds no <model>/<dataset>/<prompt>.jsonl: run the evaluate stage")
    summary: dict[str, Any] = {"judge": cfg.judge.label, "models": {}, "run": {"calls": 0, "cache_hits": 0}}
    failures: list[str] = []
    for path in files:
        model, dataset, prompt = path.relative_to(predictions).with_suffix("").parts
        try:
            run = judge_file(path, out_dir / model / dataset / f"{prompt}.jsonl", cfg.judge)
        except JudgeFailed as exc:
            failures.append(str(exc))
            run = exc.run
        summary["run"]["calls"] += run.calls
        summary["run"]["cache_hits"] += run.cache_hits
        summary["models"].setdefault(model, {}).setdefault(dataset, {})[prompt] = cell_summary(run.scores)
    summary["run"]["files_failed"] = len(failures)
    return summary, failures


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


def run_stage(cfg, ctx) -> dict:
    """The judge stage: score, summarise, log; fail (after writing everything) when a file exceeded the threshold."""
    import shutil

    from rarl_core.io import write_json
    from tasks.common import log_artifacts, metrics_file

    out_dir = Path(cfg.paths.judge)
    shutil.rmtree(out_dir, ignore_errors=True)  # a stage output, replaced whole (DVC does the same before a run)
    summary, failures = judge_predictions(cfg, out_dir)
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


def stage(argv: list[str]) -> int:
    """`python -m tasks.judge --stage [--params P]`: run the judge stage like every other stage."""
    from tasks.common import stage_main

    try:
        return stage_main("judge", run_stage, ("judge",), [a for a in argv if a != "--stage"])
    except JudgeStageFailed as exc:
        print(f"error in stage judge: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
