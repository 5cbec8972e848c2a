"""LLM-as-judge evaluation: every prediction's correctness and reasoning on the RARL authors' 0-3 scale.

Two kinds of judge (the `judge:` section of params.yaml, rarl_core.config.JudgeConfig):

* ``model: rubric`` (the default): the deterministic offline rubric (rubric.py), so the pipeline runs end to end with
  no network and no key; every row it scores is labelled "rubric (offline)".
* any other value is a LiteLLM model string ("gpt-4o-mini", "ollama/llama3.1", "openai/<name>" with ``api_base`` for
  a local vLLM or other OpenAI-compatible server), called by client.py. The API key comes from the provider's usual
  environment variable, which LiteLLM reads itself; nothing here receives, stores or prints it.

The rooms: prompt.py (the prompt and the reading of the reply), rubric.py (the offline judge), client.py (LiteLLM
calls, retries), cache.py (finished verdicts in SQLite), redact.py (secrets out of every stored text). This module
runs a whole evaluation: rows in input order, each success cached as it arrives, a row that still fails gets
``error`` (with any secret scrubbed) and null scores, and a file fails only when more than ``max_failure_rate`` of
its rows failed, after its scores were written.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarl_core.config import RUBRIC_LABEL, RUBRIC_MODEL, JudgeConfig
from rarl_core.files import project_path, read_jsonl, write_jsonl
from rarl_core.judge.cache import ScoreCache, cache_key
from rarl_core.judge.prompt import SCALE_MAX, JudgeScore
from rarl_core.judge.redact import scrub
from rarl_core.judge.rubric import rubric_score

REQUIRED_ROW_KEYS = ("id", "question", "answer", "completion")

__all__ = ["JudgeFailed", "JudgeRun", "RUBRIC_LABEL", "RUBRIC_MODEL", "judge_file", "judge_predictions",
           "judge_rows", "summarize_scores"]


class JudgeFailed(RuntimeError):
    """More rows than ``max_failure_rate`` allows could not be scored. Raised after the scores were written."""

    def __init__(self, message: str, run: "JudgeRun") -> None:
        super().__init__(message)
        self.run = run


@dataclass
class JudgeRun:
    """Outcome of judging a list of rows."""

    scores: list[dict[str, Any]]  # one SCORES row per input row, input order
    calls: int = 0  # judge API requests made (retries included)
    cache_hits: int = 0
    errors: int = 0  # rows whose error is not null
    judge: str = RUBRIC_LABEL
    elapsed_s: float = 0.0


def _score_row(row_id: Any, label: str, score: JudgeScore | None, error: str | None) -> dict[str, Any]:
    """One SCORES row; scores normalised to [0, 1] (x / 3), nulls when there is an error."""
    ok = score is not None and error is None
    return {
        "id": row_id,
        "correctness": score.correctness / SCALE_MAX if ok else None,  # type: ignore[union-attr]
        "reasoning": score.reasoning / SCALE_MAX if ok else None,  # type: ignore[union-attr]
        "rationale": scrub(score.rationale) if ok else None,  # type: ignore[union-attr]
        "judge": label,
        "error": None if ok else scrub(error or "no score"),
    }


def _check_rows(rows: list[Any]) -> None:
    """Fail fast on input that cannot be judged at all (missing fields, duplicate ids), naming the rows."""
    bad = [i for i, r in enumerate(rows) if not isinstance(r, dict) or any(k not in r for k in REQUIRED_ROW_KEYS)]
    if bad:
        raise ValueError(f"{len(bad)} prediction row(s) lack one of {', '.join(REQUIRED_ROW_KEYS)} "
                         f"(row indexes {bad[:5]}{'...' if len(bad) > 5 else ''})")
    dupes = [k for k, n in Counter(json.dumps(r["id"]) for r in rows).items() if n > 1]
    if dupes:
        raise ValueError(f"duplicate prediction ids: {', '.join(dupes[:5])}")


def _text_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The row with question/answer/completion as strings (None -> ''), so numbers or nulls do not crash a run."""
    return {**row, **{key: "" if row[key] is None else str(row[key]) for key in ("question", "answer", "completion")}}


def _judge_rubric(rows: list[dict[str, Any]], bar: Any) -> list[dict[str, Any]]:
    scores = []
    for row in rows:
        score = rubric_score(row["question"], row["answer"], row["completion"], row.get("answer_type"),
                             row.get("choices") or ())
        scores.append(_score_row(row["id"], RUBRIC_LABEL, score, None))
        bar.update(1)
    return scores


def _judge_with_llm(rows: list[dict[str, Any]], cfg: JudgeConfig, bar: Any) -> JudgeRun:
    import asyncio

    from rarl_core.judge.client import Counters, import_litellm, judge_one, run_coroutine

    keys = [cache_key(cfg.model, r["question"], r["answer"], r["completion"]) for r in rows]
    cache = ScoreCache(project_path(cfg.cache_path))  # one cache for the workspace and every experiment
    counters = Counters()
    try:
        cached = cache.get_many(keys)
        bar.update(sum(k in cached for k in keys))
        todo = [i for i, k in enumerate(keys) if k not in cached]
        fresh: dict[int, tuple[JudgeScore | None, str | None]] = {}

        async def judge_todo() -> None:
            litellm = import_litellm()
            semaphore = asyncio.Semaphore(cfg.concurrency)

            async def one(i: int) -> None:
                async with semaphore:
                    score, error = await judge_one(litellm, rows[i], cfg, counters)
                if score is not None:
                    cache.put(keys[i], cfg.model, score)
                fresh[i] = (score, error)
                bar.update(1)

            await asyncio.gather(*(one(i) for i in todo))

        if todo:
            run_coroutine(judge_todo)
    finally:
        cache.close()
    scores = [_score_row(row["id"], cfg.label, *((cached[keys[i]], None) if keys[i] in cached else fresh[i]))
              for i, row in enumerate(rows)]
    return JudgeRun(scores, calls=counters.calls, cache_hits=len(rows) - len(todo))


def judge_rows(rows: list[dict[str, Any]], cfg: JudgeConfig, progress: bool = True) -> JudgeRun:
    """Score every row (each needs id, question, answer, completion); output order = input order.

    Rows that cannot be scored get an ``error`` and null scores; this function does not apply
    ``max_failure_rate`` (``judge_file`` does), so callers can inspect a failed run.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    _check_rows(rows)
    rows = [_text_fields(r) for r in rows]
    with tqdm(total=len(rows), desc=f"judge [{cfg.label}]", unit="row", disable=not progress, file=sys.stderr) as bar:
        run = JudgeRun(_judge_rubric(rows, bar)) if cfg.is_rubric else _judge_with_llm(rows, cfg, bar)
    run.errors = sum(s["error"] is not None for s in run.scores)
    run.judge = cfg.label
    run.elapsed_s = time.perf_counter() - started
    return run


def summarize_scores(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """Metrics for a SCORES list: means over scored rows (None when none were scored), counts of scored/error rows."""
    ok = [s for s in scores if s.get("error") is None and s.get("correctness") is not None]

    def mean(key: str) -> float | None:
        return sum(float(s[key]) for s in ok) / len(ok) if ok else None

    return {"mean_correctness": mean("correctness"), "mean_reasoning": mean("reasoning"), "n_scored": len(ok),
            "n_errors": len(scores) - len(ok)}


def _failure_message(run: JudgeRun, cfg: JudgeConfig, out: Path) -> str:
    """How many rows failed, the most common reasons (with one example each), and what to do next."""
    n = len(run.scores)
    errors = [s["error"] for s in run.scores if s["error"] is not None]
    by_kind = Counter(e.split(":", 1)[0] for e in errors)
    examples: dict[str, str] = {}
    for e in errors:
        examples.setdefault(e.split(":", 1)[0], e)
    reasons = "; ".join(f"{kind} x{count} (e.g. {examples[kind][:160]!r})" for kind, count in by_kind.most_common(3))
    where = f" at {cfg.api_base}" if cfg.api_base else ""
    return (
        f"judge: {len(errors)} of {n} rows ({len(errors) / n:.1%}) could not be scored by {cfg.label}, more than "
        f"max_failure_rate={cfg.max_failure_rate:g}. Most common reasons: {reasons}. "
        f"Scores, with the failed rows marked in 'error', were written to {out}. What to do: check that the judge "
        f"is reachable{where} and its API key environment variable is set; for rate limits lower judge.concurrency; "
        f"for malformed replies use a stronger judge model. Then rerun: scored rows are cached in {cfg.cache_path} "
        f"and only the failed rows will be sent again."
    )


def judge_file(predictions: Path, out: Path, cfg: JudgeConfig, progress: bool = True) -> JudgeRun:
    """PREDICTIONS JSONL -> SCORES JSONL (written atomically); then JudgeFailed if too many rows failed."""
    run = judge_rows(read_jsonl(Path(predictions)), cfg, progress=progress)
    write_jsonl(Path(out), run.scores)
    if run.scores and run.errors / len(run.scores) > cfg.max_failure_rate:
        raise JudgeFailed(_failure_message(run, cfg, Path(out)), run)
    return run


FAMILIES = ("qwen", "llama", "gemma", "mistral", "phi", "deepseek", "internvl", "llava", "gpt", "claude", "gemini")


def model_family(name: str) -> str | None:
    """The model family a model string or folder names (its config.json model_type for a local folder): judges
    favour their own family's answers, so a judge of the evaluated models' family is flagged."""
    folder = Path(name) / "config.json"
    text = (json.loads(folder.read_text()).get("model_type", "") if folder.is_file() else name).lower()
    if "medgemma" in text:
        return "gemma"
    return next((family for family in FAMILIES if family in text), None)


def length_correlation(rows: list[dict[str, Any]], scores: list[dict[str, Any]]) -> dict[str, float | None]:
    """Spearman correlation of each judge score with the completion's length in tokens (LLM judges in medicine
    favour long answers); None when there are fewer than 3 scored rows or no variation."""
    from scipy.stats import spearmanr

    out: dict[str, float | None] = {}
    for key in ("correctness", "reasoning"):
        pairs = [(r.get("completion_tokens"), s[key]) for r, s in zip(rows, scores)
                 if s[key] is not None and r.get("completion_tokens") is not None]
        if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
            out[key] = None
            continue
        out[key] = float(spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic)
    return out


def judge_predictions(cfg: JudgeConfig, predictions: Path, out_dir: Path,
                      evaluated_model: str = "") -> tuple[dict[str, Any], list[str]]:
    """Score every <model>/<dataset>/<prompt>.jsonl under `predictions` into `out_dir`; (judge.json, failures).

    judge.json holds, per model x dataset x prompt, the means, counts, the distribution of each score and its
    correlation with completion length; and `same_family` when the judge is of `evaluated_model`'s family.
    """
    from rarl_core.metrics import score_histogram

    files = sorted(Path(predictions).glob("*/*/*.jsonl"))
    if not files:
        raise FileNotFoundError(f"{predictions} holds no <model>/<dataset>/<prompt>.jsonl: run the evaluate stage")
    family = None if cfg.is_rubric else model_family(cfg.model)
    summary: dict[str, Any] = {"judge": cfg.label, "models": {}, "run": {"calls": 0, "cache_hits": 0},
                               "same_family": family if family and family == model_family(evaluated_model) else None}
    failures: list[str] = []
    for path in files:
        model, dataset, prompt = path.relative_to(predictions).with_suffix("").parts
        try:
            run = judge_file(path, out_dir / model / dataset / f"{prompt}.jsonl", cfg)
        except JudgeFailed as exc:
            failures.append(str(exc))
            run = exc.run
        summary["run"]["calls"] += run.calls
        summary["run"]["cache_hits"] += run.cache_hits
        summary["models"].setdefault(model, {}).setdefault(dataset, {})[prompt] = summarize_scores(run.scores) | {
            "correctness_hist": score_histogram([s["correctness"] for s in run.scores]),
            "reasoning_hist": score_histogram([s["reasoning"] for s in run.scores]),
            "length_correlation": length_correlation(read_jsonl(path), run.scores),
        }
    summary["run"]["files_failed"] = len(failures)
    return summary, failures
