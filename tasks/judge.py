"""`rarl judge PREDICTIONS --out SCORES`: score predictions with the LLM judge (or the offline rubric).

A thin adapter: settings come from the ``judge:`` section of params.yaml (so DVC tracks them), ``--model`` and
``--api-base`` override it for one run, and all the work is in :mod:`rarl_core.judge`.

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


if __name__ == "__main__":
    raise SystemExit(main())
