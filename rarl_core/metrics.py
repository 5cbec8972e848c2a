"""Evaluation metrics over scored predictions: per-type accuracy, baselines and bootstrap confidence intervals.

Inputs are plain records (one per question) produced by scoring predictions with `rarl_core.answers.score_answer`,
so this module needs only the standard library and numpy. Two choices guard against numbers that look better than
they are:
- closed accuracy counts EVERY closed question: wrong and unparseable answers are wrong. (A widely copied VQA-RAD
  evaluation script only ever incremented its counter on right answers and divided by a subset, inflating accuracy.)
- a key whose answer type has no rows is omitted, never NaN or 0, so a missing measurement cannot be mistaken for
  a bad (or perfect) one.
Small test sets make differences of a few points noise; `bootstrap_ci` and `paired_bootstrap_diff` say how much.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from rarl_core.answers import ANSWER_TYPES, normalize

UNKNOWN_MODALITY = "unknown"
_MAX_BOOTSTRAP_CELLS = 2_000_000  # resample in chunks so memory stays ~16 MB whatever the data size


def summarize(records: Sequence[Mapping]) -> dict[str, float]:
    """Headline metrics for one evaluation run.

    Each record needs `answer_type`, `correct` (bool), `f1`, `recall`, `well_formed` (bool) and
    `completion_tokens` (int). Returns `n`, `accuracy` (all types), `closed_accuracy`, `open_exact`, `open_f1`,
    `open_recall`, `mc_accuracy`, `format_rate` and `mean_completion_tokens`; per-type keys are omitted when that
    type has no rows, and only `n` is returned for no records. ValueError for an unknown answer_type.
    """
    summary: dict[str, float] = {"n": len(records)}
    if not records:
        return summary
    by_type: dict[str, list[Mapping]] = defaultdict(list)
    for record in records:
        by_type[_answer_type(record)].append(record)
    summary["accuracy"] = _mean(r["correct"] for r in records)
    if by_type["closed"]:
        summary["closed_accuracy"] = _mean(r["correct"] for r in by_type["closed"])
    if by_type["open"]:
        summary["open_exact"] = _mean(r["correct"] for r in by_type["open"])
        summary["open_f1"] = _mean(r["f1"] for r in by_type["open"])
        summary["open_recall"] = _mean(r["recall"] for r in by_type["open"])
    if by_type["multiple_choice"]:
        summary["mc_accuracy"] = _mean(r["correct"] for r in by_type["multiple_choice"])
    summary["format_rate"] = _mean(r["well_formed"] for r in records)
    summary["mean_completion_tokens"] = _mean(r["completion_tokens"] for r in records)
    return summary


def by_modality(records: Sequence[Mapping]) -> dict[str, float]:
    """Accuracy per imaging modality (records without one are grouped under "unknown"), sorted by name."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for record in records:
        groups[record.get("modality") or UNKNOWN_MODALITY].append(bool(record["correct"]))
    return {modality: _mean(groups[modality]) for modality in sorted(groups)}


def _answer_type(record: Mapping) -> str:
    kind = record["answer_type"]
    if kind not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {kind!r}; expected one of {ANSWER_TYPES}")
    return kind


def _mean(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values)


def majority_baseline(answers: Sequence[str], answer_types: Sequence[str],
                      choices: Sequence[Sequence[str]] | None = None) -> float:
    """Accuracy of a model that ignores the image: per answer type, always give that type's most frequent answer.

    Answers are compared after `normalize` ("Yes" == "yes"), so for closed questions this is the yes/no prior and
    for open ones the commonest answer string. With `choices`, multiple-choice rows are counted by option position
    instead (always answering "A" if A is most often right), the prior that matters there; without, by option
    text. Report it beside every accuracy: a model at the baseline has learned nothing from the image.
    Ties are harmless (any majority answer gives the same count). ValueError on empty or mismatched input.
    """
    if not answers or len(answers) != len(answer_types) or (choices is not None and len(choices) != len(answers)):
        raise ValueError(f"need equal, non-empty inputs; got {len(answers)} answers, {len(answer_types)} types"
                         + ("" if choices is None else f", {len(choices)} choice lists"))
    keys: dict[str, list[str]] = defaultdict(list)
    for i, (answer, kind) in enumerate(zip(answers, answer_types)):
        keys[kind].append(_baseline_key(answer, kind, None if choices is None else choices[i]))
    hits = sum(Counter(values).most_common(1)[0][1] for values in keys.values())
    return hits / len(answers)


def _baseline_key(answer: str, kind: str, options: Sequence[str] | None) -> str:
    """What "the same answer" means for the baseline: option position for MC with choices, else normalised text."""
    if kind == "multiple_choice" and options is not None:
        norm = [normalize(o) for o in options]
        if normalize(answer) in norm:
            return f"#{norm.index(normalize(answer))}"
    return normalize(answer)


def bootstrap_ci(values: Sequence[float], n_resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of `values` (deterministic for a given seed).

    ValueError for no values, n_resamples < 1, or confidence outside (0, 1).
    """
    data = np.asarray(values, dtype=float)
    if data.ndim != 1 or data.size == 0:
        raise ValueError(f"need a non-empty 1-D sequence of values, got shape {data.shape}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    means = _resampled_means(data, n_resamples, np.random.default_rng(seed))
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return float(lo), float(hi)


def _resampled_means(data: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    chunk = max(1, _MAX_BOOTSTRAP_CELLS // data.size)
    means = []
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        means.append(data[rng.integers(0, data.size, size=(size, data.size))].mean(axis=1))
    return np.concatenate(means)


def paired_bootstrap_diff(a: Sequence[float], b: Sequence[float], n_resamples: int = 1000,
                          confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(mean of a - b, CI low, CI high) for two systems scored on the SAME questions, resampling questions.

    Pairing removes the question-difficulty variance both systems share, so it detects smaller differences than
    comparing two separate intervals. Positive means `a` scores higher; an interval containing 0 is no evidence
    of a difference. ValueError when the lengths differ.
    """
    if len(a) != len(b):
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    lo, hi = bootstrap_ci(diff, n_resamples=n_resamples, confidence=confidence, seed=seed)
    return float(diff.mean()), lo, hi


def question_means(records: Sequence[Mapping], key: str = "correct") -> list[float]:
    """Mean of `key` per question, in first-seen order: the unit to resample when a question has several samples.

    Records of one question share `question_id` (falling back to `id`); with one completion per question this is
    simply each record's value. Resampling questions, not samples, keeps intervals honest when sampling n > 1.
    """
    groups: dict[object, list[float]] = {}
    for record in records:
        groups.setdefault(record.get("question_id", record["id"]), []).append(float(record[key]))
    return [sum(values) / len(values) for values in groups.values()]


def generalisation_gaps(models: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]],
                        in_domain: Sequence[str], unseen: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per model and prompt: mean unseen accuracy minus mean in-domain accuracy (negative = worse off-domain).

    `models` is {model: {dataset: {prompt: metrics}}}. A model x prompt missing either side is left out.
    """
    gaps: dict[str, dict[str, float]] = {}
    for model, per_set in models.items():
        prompts = sorted({p for per_prompt in per_set.values() for p in per_prompt})
        for prompt in prompts:
            ind = [per_set[d][prompt]["accuracy"] for d in in_domain if prompt in per_set.get(d, {})]
            uns = [per_set[d][prompt]["accuracy"] for d in unseen if prompt in per_set.get(d, {})]
            if ind and uns:
                gaps.setdefault(model, {})[prompt] = sum(uns) / len(uns) - sum(ind) / len(ind)
    return gaps


def score_histogram(scores: Sequence[float | None], levels: int = 4) -> list[int]:
    """Counts of judge scores in [0, 1] on a `levels`-point scale (the judge's 0-3 -> 4 levels); None skipped.

    A mean hides whether a model is uniformly mediocre or right half the time; the distribution shows it.
    """
    counts = [0] * levels
    for score in scores:
        if score is not None:
            counts[min(levels - 1, max(0, round(float(score) * (levels - 1))))] += 1
    return counts
