"""Evaluation metrics over scored predictions: per-type accuracy, baselines and bootstrap confidence intervals.

Inputs are plain records (one per question) produced by scoring predictions with `rarl_core.answers.score_answer`,
so this module needs only the standard library and numpy. Two choices guard against numbers that look better than
they are:
- closed accuracy counts EVERY closed question: wrong and unparseable answers are wrong. (A widely copied VQA-RAD
  evaluation script only ever incremented its counter on right answers and divided by a subset, inflating accuracy.)
- a key whose answer type has no rows is omitted, never NaN or 0, so a missing measurement cannot be mistaken for
  a bad (or perfect) one.
Small test sets make differences of a few points noise; `bootstrap_ci` and `paired_bootstrap` say how much, with
one bootstrap for every interval the project reports (questions, and seeds when there are several).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from rarl_core.answers import ANSWER_TYPES, normalize

UNKNOWN_MODALITY = "unknown"
_MAX_BOOTSTRAP_CELLS = 2_000_000  # questions x replicates per chunk: ~16 MB whatever the data size


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


def _seeds_by_questions(x: Sequence[float] | Sequence[Sequence[float]]) -> np.ndarray:
    """Scores as a seeds x questions matrix (a flat sequence is one seed); ValueError when empty or ragged."""
    data = np.asarray(x, dtype=float)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2 or data.size == 0:
        raise ValueError(f"need a non-empty sequence of scores (or seeds x questions), got shape {data.shape}")
    return data


def _replicate_means(xs: list[np.ndarray], n_resamples: int, seed: int) -> list[np.ndarray]:
    """The bootstrap replicates of the mean of each seeds x questions matrix of `xs` (all on the same questions).

    Each replicate draws one multiset of questions, shared by every matrix (the pairing: question difficulty
    cancels in a difference), and then each matrix's seeds with replacement on their own (different training runs),
    so that both seed-to-seed and question-to-question variation widen the interval. Chunked so that memory stays
    ~16 MB whatever the number of questions.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    n_questions = xs[0].shape[1]
    chunk = max(1, _MAX_BOOTSTRAP_CELLS // n_questions)
    out: list[list[np.ndarray]] = [[] for _ in xs]
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        counts = rng.multinomial(n_questions, np.full(n_questions, 1.0 / n_questions), size=size).astype(float)
        for replicates, x in zip(out, xs):
            n_seeds = x.shape[0]
            seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=size)
            replicates.append((seed_counts * (counts @ x.T)).sum(axis=1) / (n_seeds * n_questions))
    return [np.concatenate(replicates) for replicates in out]


def _interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.nanpercentile(replicates, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_ci(scores: Sequence[float] | Sequence[Sequence[float]], n_resamples: int, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean score: questions resampled, and seeds too for a seeds x questions
    table (deterministic for a given `seed`). With one seed this is the usual question bootstrap; with several,
    seeds that disagree widen it, as they should: a claim about a training method is a claim about every seed it
    could have been run with. ValueError for no scores, n_resamples < 1, or confidence outside (0, 1).
    """
    (replicates,) = _replicate_means([_seeds_by_questions(scores)], n_resamples, seed)
    return _interval(replicates, confidence)


def paired_bootstrap(a: Sequence[float] | Sequence[Sequence[float]], b: Sequence[float] | Sequence[Sequence[float]],
                     n_resamples: int, confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Mean of a minus mean of b, scored on the SAME questions in the same order (each a flat list, or seeds x
    questions), with a paired bootstrap interval; `relative` is mean(a) / mean(b) - 1, the form of the paper's
    unseen-data claims. Keys: diff, ci_low, ci_high, relative, rel_low, rel_high.

    Pairing removes the question-difficulty variance both systems share, so it detects smaller differences than
    comparing two separate intervals. Positive means `a` scores higher; an interval containing 0 is no evidence of a
    difference. ValueError when the questions differ in number.
    """
    xa, xb = _seeds_by_questions(a), _seeds_by_questions(b)
    if xa.shape[1] != xb.shape[1]:
        raise ValueError(f"paired scores need the same questions, got {xa.shape[1]} and {xb.shape[1]}")
    ma, mb = _replicate_means([xa, xb], n_resamples, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(mb > 0, ma / mb - 1.0, np.nan)
    low, high = _interval(ma - mb, confidence)
    rel_low, rel_high = _interval(relative, confidence) if np.isfinite(relative).any() else (np.nan, np.nan)
    mean_a, mean_b = float(xa.mean()), float(xb.mean())
    return {"diff": mean_a - mean_b, "ci_low": low, "ci_high": high,
            "relative": mean_a / mean_b - 1.0 if mean_b > 0 else float("nan"), "rel_low": rel_low, "rel_high": rel_high}


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
