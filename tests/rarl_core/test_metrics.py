"""Tests for evaluation metrics: concrete values, the wrong-closed-answers edge case, baselines and bootstrap CIs."""

from __future__ import annotations

import numpy as np
import pytest

from rarl_core.metrics import (
    bootstrap_ci,
    by_modality,
    generalisation_gaps,
    majority_baseline,
    paired_bootstrap,
    question_means,
    score_histogram,
    summarize,
)


def rec(kind, correct, f1=None, recall=None, well_formed=True, tokens=10, modality=None):
    """One scored prediction; f1/recall default to float(correct) as score_answer gives for closed and MC."""
    record = {
        "answer_type": kind,
        "correct": correct,
        "f1": float(correct) if f1 is None else f1,
        "recall": float(correct) if recall is None else recall,
        "well_formed": well_formed,
        "completion_tokens": tokens,
    }
    if modality is not None:
        record["modality"] = modality
    return record


def test_summarize_all_types():
    records = [
        rec("closed", True, tokens=10),
        rec("closed", False, tokens=20),
        rec("open", True, tokens=30),
        rec("open", False, f1=0.5, recall=1.0, well_formed=False, tokens=40),
        rec("multiple_choice", True, tokens=50),
    ]
    assert summarize(records) == {
        "n": 5,
        "accuracy": pytest.approx(3 / 5),
        "closed_accuracy": pytest.approx(0.5),
        "open_exact": pytest.approx(0.5),
        "open_f1": pytest.approx(0.75),
        "open_recall": pytest.approx(1.0),
        "mc_accuracy": pytest.approx(1.0),
        "format_rate": pytest.approx(4 / 5),
        "mean_completion_tokens": pytest.approx(30.0),
    }


def test_closed_accuracy_counts_wrong_and_unparseable_answers():
    # The widely copied VQA-RAD script only counted right answers: it would report 1.0 here.
    records = [rec("closed", True), rec("closed", False), rec("closed", False, well_formed=False),
               rec("closed", False)]
    summary = summarize(records)
    assert summary["closed_accuracy"] == 0.25
    assert summary["accuracy"] == 0.25


def test_summarize_omits_types_without_rows():
    summary = summarize([rec("closed", True), rec("closed", True)])
    assert summary == {"n": 2, "accuracy": 1.0, "closed_accuracy": 1.0, "format_rate": 1.0,
                       "mean_completion_tokens": 10.0}
    assert not any(k.startswith(("open", "mc")) for k in summary)


def test_summarize_empty():
    assert summarize([]) == {"n": 0}


def test_summarize_unknown_type():
    with pytest.raises(ValueError, match="'yes/no'"):
        summarize([rec("yes/no", True)])


def test_by_modality():
    records = [rec("closed", True, modality="CT"), rec("closed", False, modality="CT"),
               rec("open", True, modality="MRI"), rec("open", False, modality=""), rec("closed", False)]
    assert by_modality(records) == {"CT": 0.5, "MRI": 1.0, "unknown": 0.0}
    assert by_modality([]) == {}


@pytest.mark.parametrize(
    ("answers", "types", "expected"),
    [
        # closed: 3 of 4 are yes (case and punctuation folded); open: "liver" 2 of 3
        (["yes", "Yes.", "YES", "no", "liver", "Liver", "spleen"], ["closed"] * 4 + ["open"] * 3, 5 / 7),
        (["yes", "no"], ["closed", "closed"], 0.5),
        (["no"] * 5, ["closed"] * 5, 1.0),
        # the majority is per type: "yes" is the open majority too but counted separately
        (["no", "no", "yes", "yes"], ["closed", "closed", "open", "open"], 1.0),
        (["a", "b", "c"], ["open"] * 3, 1 / 3),
    ],
)
def test_majority_baseline(answers, types, expected):
    assert majority_baseline(answers, types) == pytest.approx(expected)


def test_majority_baseline_multiple_choice_by_position():
    answers = ["CT", "MRI", "X-ray", "PET"]
    choices = [["CT", "MRI"], ["MRI", "CT"], ["X-ray", "CT"], ["CT", "PET"]]
    # by text every answer is distinct (1/4); by position three of four are option A
    assert majority_baseline(answers, ["multiple_choice"] * 4) == 0.25
    assert majority_baseline(answers, ["multiple_choice"] * 4, choices=choices) == 0.75


@pytest.mark.parametrize(("answers", "types"), [([], []), (["yes"], []), (["yes", "no"], ["closed"])])
def test_majority_baseline_bad_input(answers, types):
    with pytest.raises(ValueError):
        majority_baseline(answers, types)


def test_bootstrap_ci_covers_mean_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small = rng.binomial(1, 0.7, size=50).astype(float)
    large = rng.binomial(1, 0.7, size=5000).astype(float)
    lo_s, hi_s = bootstrap_ci(small, n_resamples=1000)
    lo_l, hi_l = bootstrap_ci(large, n_resamples=1000)
    assert lo_s <= small.mean() <= hi_s
    assert lo_l <= large.mean() <= hi_l
    assert lo_s < hi_s and lo_l < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5  # ~ 1/sqrt(100) of the width
    # normal-theory width for a proportion: 2 * 1.96 * sqrt(p(1-p)/n)
    p = large.mean()
    assert hi_l - lo_l == pytest.approx(2 * 1.96 * np.sqrt(p * (1 - p) / large.size), rel=0.15)


def test_bootstrap_ci_is_deterministic_and_seeded():
    values = np.random.default_rng(5).normal(size=40)
    assert bootstrap_ci(values, seed=3, n_resamples=1000) == bootstrap_ci(values, seed=3, n_resamples=1000)
    assert bootstrap_ci(values, seed=3, n_resamples=1000) != bootstrap_ci(values, seed=4, n_resamples=1000)


def test_bootstrap_ci_confidence_widens_interval():
    values = np.random.default_rng(0).normal(size=200)
    lo90, hi90 = bootstrap_ci(values, confidence=0.90, n_resamples=1000)
    lo99, hi99 = bootstrap_ci(values, confidence=0.99, n_resamples=1000)
    assert lo99 < lo90 < hi90 < hi99


def test_bootstrap_ci_constant_and_single_values():
    assert bootstrap_ci([0.5] * 10, n_resamples=1000) == (0.5, 0.5)
    assert bootstrap_ci([1.0], n_resamples=1000) == (1.0, 1.0)


def test_bootstrap_ci_large_input_is_chunked_and_exact_length():
    values = np.zeros(100_000)
    values[::4] = 1.0
    lo, hi = bootstrap_ci(values, n_resamples=50)
    assert lo <= 0.25 <= hi and hi - lo < 0.01


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scores": [], "n_resamples": 100}, "non-empty"),
        ({"scores": [1.0], "n_resamples": 0}, "n_resamples"),
        ({"scores": [1.0], "n_resamples": 100, "confidence": 1.0}, "confidence"),
        ({"scores": [1.0], "n_resamples": 100, "confidence": 0.0}, "confidence"),
    ],
)
def test_bootstrap_ci_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(**kwargs)


def test_paired_bootstrap_detects_a_consistent_gain():
    rng = np.random.default_rng(2)
    b = rng.binomial(1, 0.5, size=400).astype(float)
    a = b.copy()
    flip = np.flatnonzero(b == 0)[:40]  # a is right on 40 more questions, never worse
    a[flip] = 1.0
    d = paired_bootstrap(a, b, n_resamples=1000)
    assert d["diff"] == pytest.approx(0.1)
    assert 0.0 < d["ci_low"] <= d["diff"] <= d["ci_high"]


def test_paired_bootstrap_sign_and_null():
    same = [1.0, 0.0, 1.0, 1.0]
    d = paired_bootstrap(same, same, n_resamples=1000)
    assert (d["diff"], d["ci_low"], d["ci_high"]) == (0.0, 0.0, 0.0)
    d = paired_bootstrap([0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 1.0], n_resamples=1000)
    assert d["diff"] == -0.5 and d["ci_low"] <= d["diff"] <= d["ci_high"] <= 0.0


def test_paired_bootstrap_length_mismatch():
    with pytest.raises(ValueError, match="same questions"):
        paired_bootstrap([1.0, 0.0], [1.0], n_resamples=100)


def test_question_means_average_samples_of_one_question():
    records = [{"id": "q1#0", "question_id": "q1", "correct": True}, {"id": "q1#1", "question_id": "q1", "correct": False},
               {"id": "q2", "correct": True}]
    assert question_means(records) == [0.5, 1.0]


def test_generalisation_gaps_unseen_minus_in_domain():
    models = {"sft": {"a": {"plain": {"accuracy": 0.8}, "reasoning": {"accuracy": 0.6}},
                      "a2": {"plain": {"accuracy": 0.6}},
                      "b": {"plain": {"accuracy": 0.5}, "reasoning": {"accuracy": 0.7}}},
              "only_in_domain": {"a": {"plain": {"accuracy": 0.9}}}}
    gaps = generalisation_gaps(models, ["a", "a2"], ["b"])
    assert gaps == {"sft": {"plain": pytest.approx(0.5 - 0.7), "reasoning": pytest.approx(0.1)}}


@pytest.mark.parametrize(("scores", "expected"), [
    ([0.0, 1 / 3, 2 / 3, 1.0, 1.0, None], [1, 1, 1, 2]),
    ([0.49, 0.51], [0, 1, 1, 0]),  # non-integer judge scores go to the nearest level
    ([], [0, 0, 0, 0]),
])
def test_score_histogram(scores, expected):
    assert score_histogram(scores) == expected


def draws(p_per_seed: list[float], n_questions: int = 300, seed: int = 0) -> np.ndarray:
    """Seeds x questions of 0/1 scores, seed k right with probability p_per_seed[k]."""
    rng = np.random.default_rng(seed)
    return np.stack([(rng.random(n_questions) < p).astype(float) for p in p_per_seed])


# ----------------------------------------------------------------------------------------------------------------
# Seeds, then questions
# ----------------------------------------------------------------------------------------------------------------


def test_seeds_that_disagree_span_the_interval():
    """One seed right on every question, the other wrong on every one: the mean is 0.5, but which seed a user gets
    decides everything, so the interval is the whole [0, 1] (a question-only bootstrap would say [0.5, 0.5])."""
    x = np.stack([np.ones(50), np.zeros(50)])
    assert bootstrap_ci(x, n_resamples=1000) == (0.0, 1.0)
    assert bootstrap_ci(x.mean(axis=0), n_resamples=1000) == (0.5, 0.5)


def test_one_seed_is_the_question_bootstrap():
    x = draws([0.7], n_questions=400, seed=7)
    low, high = bootstrap_ci(x, n_resamples=2000)
    ref_low, ref_high = bootstrap_ci(x[0], n_resamples=2000)
    assert low == pytest.approx(ref_low, abs=0.015) and high == pytest.approx(ref_high, abs=0.015)
    assert bootstrap_ci(x, n_resamples=500, seed=1) == bootstrap_ci(x, n_resamples=500, seed=1)


def test_empty_table_is_an_error():
    with pytest.raises(ValueError, match="seeds x questions"):
        bootstrap_ci([[]], n_resamples=100)


