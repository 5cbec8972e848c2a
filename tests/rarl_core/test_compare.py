"""The comparison's statistics and diagnostics on data whose truth is known.

Verdicts: a clear win is supported, a clear loss refuted, noise not resolved, and a win that only some seeds show is
not resolved either (the seed resample is what catches it). Diagnostics: consistency between think and answer, and
collapse of yes/no answers, on small tables of completions.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from transformers import TrainerControl, TrainerState

from rarl_core import compare
from rarl_core.compare import (
    CONTROL,
    REFUTED,
    SFT,
    SUPPORTED,
    UNRESOLVED,
    Budget,
    Design,
    analyse,
    cell_diagnostics,
    control_budget,
    reward_curves,
    think_agrees,
    verdict,
)
from rarl_core.metrics import bootstrap_ci, paired_bootstrap
from tests.conftest import config_with


def draws(p_per_seed: list[float], n_questions: int = 300, seed: int = 0) -> np.ndarray:
    """Seeds x questions of 0/1 scores, seed k right with probability p_per_seed[k]."""
    rng = np.random.default_rng(seed)
    return np.stack([(rng.random(n_questions) < p).astype(float) for p in p_per_seed])


# ----------------------------------------------------------------------------------------------------------------
# Verdicts
# ----------------------------------------------------------------------------------------------------------------


def test_clear_win_is_supported_and_clear_loss_refuted():
    better, worse = draws([0.8, 0.8, 0.8], seed=1), draws([0.5, 0.5, 0.5], seed=2)
    win = paired_bootstrap(better, worse, n_resamples=1000)
    assert win["diff"] == pytest.approx(better.mean() - worse.mean())
    assert 0 < win["ci_low"] < win["diff"] < win["ci_high"]
    assert verdict(win["ci_low"], win["ci_high"]) == SUPPORTED
    loss = paired_bootstrap(worse, better, n_resamples=1000)
    assert verdict(loss["ci_low"], loss["ci_high"]) == REFUTED


def test_noise_is_not_resolved():
    a, b = draws([0.6, 0.6, 0.6], seed=3), draws([0.6, 0.6, 0.6], seed=4)
    d = paired_bootstrap(a, b, n_resamples=1000)
    assert d["ci_low"] < 0 < d["ci_high"]
    assert verdict(d["ci_low"], d["ci_high"]) == UNRESOLVED


def test_a_win_that_only_some_seeds_show_is_not_resolved():
    """Pooled over seeds, a beats b by ~18 points and a question-only bootstrap calls it certain; but one of a's three
    seeds is worse than b, so a fresh seed could well lose: resampling seeds widens the interval past 0."""
    a, b = draws([0.95, 0.35, 0.75], seed=5), draws([0.5, 0.5, 0.5], seed=6)
    question_only_low, _ = bootstrap_ci(a.mean(axis=0) - b.mean(axis=0), n_resamples=1000)
    assert question_only_low > 0.1
    d = paired_bootstrap(a, b, n_resamples=2000)
    assert d["diff"] > 0.15 and d["ci_low"] < 0
    assert verdict(d["ci_low"], d["ci_high"]) == UNRESOLVED


def test_relative_difference_is_the_ratio_minus_one():
    a, b = np.full((2, 10), 0.6), np.full((1, 10), 0.5)
    d = paired_bootstrap(a, b, n_resamples=200)
    assert d["diff"] == pytest.approx(0.1) and d["relative"] == pytest.approx(0.2)
    assert d["rel_low"] == pytest.approx(0.2) and d["rel_high"] == pytest.approx(0.2)


def test_paired_bootstrap_needs_the_same_questions():
    with pytest.raises(ValueError, match="same questions"):
        paired_bootstrap(np.ones((2, 5)), np.ones((2, 6)), n_resamples=100)


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


# ----------------------------------------------------------------------------------------------------------------
# Diagnostics
# ----------------------------------------------------------------------------------------------------------------

CT = "<think>grayscale cross-section with bright bone, so CT</think>"
MRI = "<think>grayscale slice with soft-tissue contrast, so MRI</think>"
OPTIONS = ["CT", "MRI", "ultrasound"]


@pytest.mark.parametrize(
    "completion, question, answer_type, expected",
    [
        (f"{CT}<answer>yes</answer>", "Is this a CT image?", "closed", True),
        (f"{CT}<answer>no</answer>", "Is this a CT image?", "closed", False),
        (f"{MRI}<answer>no</answer>", "Is this a CT image?", "closed", True),  # concluded MRI: not a CT
        (f"{MRI}<answer>yes</answer>", "Is this a CT image?", "closed", False),
        ("<think>No lesion is seen.</think><answer>no</answer>", "Is there a lesion?", "closed", True),
        ("<think>A lesion is present.</think><answer>no</answer>", "Is there a lesion?", "closed", False),
        (f"{MRI}<answer>MRI</answer>", "What imaging modality is this?", "open", True),
        (f"{MRI}<answer>CT</answer>", "What imaging modality is this?", "open", False),
        (f"{MRI}<answer>B</answer>", "Which modality?", "multiple_choice", True),
        (f"{MRI}<answer>A</answer>", "Which modality?", "multiple_choice", False),
        ("<answer>yes</answer>", "Is this a CT image?", "closed", None),  # no think: nothing to agree with
        (f"{CT}", "Is this a CT image?", "closed", None),  # no answer
    ],
)
def test_think_agrees(completion, question, answer_type, expected):
    record = {"completion": completion, "question": question, "answer_type": answer_type,
              "choices": OPTIONS if answer_type == "multiple_choice" else []}
    assert think_agrees(record) is expected


def record(completion: str, answer: str, parsed: str | None, question: str = "Is this a CT image?") -> dict:
    correct = parsed == answer
    return {"id": completion + answer, "question": question, "answer": answer, "answer_type": "closed",
            "choices": [], "completion": completion, "parsed_answer": parsed, "correct": correct,
            "f1": float(correct), "recall": float(correct), "completion_tokens": 10,
            "well_formed": parsed is not None and "<think>" in completion}


def test_collapse_and_consistency_of_a_cell():
    """Every closed answer 'no' while the truth is half yes: majority share 100% beside 50% for the truth; the
    CT-concluding thinks that answer 'no' disagree with their own reasoning."""
    rows = [record(f"{CT}<answer>no</answer>", "yes", "no"), record(f"{CT}<answer>no</answer>", "yes", "no"),
            record(f"{MRI}<answer>no</answer>", "no", "no"), record(f"{MRI}<answer>no</answer>", "no", "no"),
            record("<answer>no</answer>", "no", "no")]
    d = cell_diagnostics(rows)
    assert d["accuracy"] == pytest.approx(3 / 5)
    assert d["format_rate"] == pytest.approx(4 / 5)
    assert d["yes_share"] == 0.0 and d["majority_share"] == 1.0
    assert d["reference_majority_share"] == pytest.approx(3 / 5)
    assert d["consistency_rate"] == pytest.approx(2 / 4)  # the think-less row is not counted


def test_cell_without_closed_questions_has_no_collapse_measure():
    rows = [{**record(f"{MRI}<answer>MRI</answer>", "MRI", "MRI", "What modality?"), "answer_type": "open"}]
    d = cell_diagnostics(rows)
    assert d["majority_share"] is None and d["yes_share"] is None and d["consistency_rate"] == 1.0


# ----------------------------------------------------------------------------------------------------------------
# Training helpers
# ----------------------------------------------------------------------------------------------------------------


def test_budget_stops_on_tokens_or_time():
    state, control = TrainerState(), TrainerControl()
    budget = Budget(tokens=100)
    budget.on_log(None, state, control, logs={"num_tokens": 90})
    assert not control.should_training_stop
    budget.on_log(None, state, control, logs={"num_tokens": 120})
    assert control.should_training_stop
    control = TrainerControl()
    clock = Budget(seconds=0.0)
    clock.on_train_begin(None, state, control)
    clock.on_log(None, state, control, logs={})
    assert control.should_training_stop


def test_control_budget_is_the_mean_of_the_seeds_grpo_runs():
    runs = [{"seconds": 10.0, "tokens": 1000}, {"seconds": 20.0, "tokens": 3000}]
    assert control_budget("wall_clock", runs) == {"seconds": 15.0}
    assert control_budget("tokens", runs) == {"tokens": 2000}


def test_reward_curves_from_trainer_logs():
    logs = [{"step": 1, "loss": 0.1}, {"step": 5, "reward": 1.2, "rewards/format_reward/mean": 0.9,
                                       "rewards/format_reward/std": 0.1}, {"step": 10, "reward": 1.4}]
    assert reward_curves(logs) == {"reward": [(5, 1.2), (10, 1.4)], "rewards/format_reward/mean": [(5, 0.9)]}


# ----------------------------------------------------------------------------------------------------------------
# From units to verdicts and the report
# ----------------------------------------------------------------------------------------------------------------


def unit(model: str, seed: int | None, p_in: float, p_unseen: float) -> dict:
    rng = np.random.default_rng(zlib.crc32(f"{model} {seed}".encode()))
    diag = {"accuracy": p_in, "format_rate": 1.0, "consistency_rate": 0.9, "yes_share": 0.5, "majority_share": 0.5,
            "reference_majority_share": 0.5}

    def cell(p: float) -> dict:
        return {"scores": (rng.random(200) < p).astype(float).tolist(), "diagnostics": diag}

    curves = {"reward": [(1, 1.0), (2, 1.5)]} if model not in (SFT, CONTROL) else {}
    return {"model": model, "seed": seed, "cells": {"a": {"reasoning": cell(p_in)}, "b": {"reasoning": cell(p_unseen)}},
            "train": None if model == SFT else {"seconds": 10.0, "tokens": 100, "steps": 5, "curves": curves}}


def test_analyse_reads_each_claim_and_renders_the_report():
    """RARL clearly above SFT in-domain and clearly below RL on the unseen set; SFT = RARL on the unseen set."""
    units = [unit(SFT, None, 0.5, 0.4)]
    for seed in (0, 1, 2):
        units += [unit("rl", seed, 0.8, 0.6), unit("rarl", seed, 0.8, 0.4), unit(CONTROL, seed, 0.85, 0.45)]
    design = Design(["rl", "rarl"], ["a"], ["b"], ["reasoning"], n_resamples=500)
    results = analyse(units, design, {"a": 0.5, "b": 0.5})
    verdicts = {c["key"]: c["verdict"] for c in results["claims"]}
    assert verdicts["rarl_vs_sft_in_domain"] == SUPPORTED
    assert verdicts["rarl_vs_rl_unseen"] == REFUTED
    assert verdicts["rarl_vs_sft_unseen"] == UNRESOLVED
    cell = results["accuracy"]["a"]["reasoning"]["rl"]
    assert cell["n_seeds"] == 3 and cell["n_questions"] == 200 and cell["ci_low"] < cell["mean"] < cell["ci_high"]
    assert results["accuracy"]["a"]["reasoning"][SFT]["sd"] is None  # one warm-up model: no seed spread
    assert set(results["paired"]) == {"rarl-rl", "rl-sft", "rarl-sft", "rl-sft_control", "rarl-sft_control",
                                      "sft_control-sft"}
    assert results["curves"]["rl"]["reward"] == [(1, 1.0), (2, 1.5)]
    assert results["training"]["rl"]["reward last"] == 1.5
    results |= {"setup": {"seeds": [0, 1, 2], "control": "tokens"}, "wall_time_s": 60.0}
    markdown = compare.render_markdown(results)
    assert "| rarl > SFT (warm-up), unseen |" in markdown and f"**{REFUTED}**" in markdown
    page = compare.render_html(results)
    assert page.count("data:image/png;base64,") == 3 and "<b>supported</b>" in page
    assert compare.summary_metrics(results)["claims"]["rarl_vs_rl_unseen/reasoning"]["verdict"] == REFUTED


@pytest.mark.parametrize(
    "section, message",
    [
        ({"control": "flops"}, "compare.control must be one of tokens, wall_clock"),
        ({"seeds": []}, "compare.seeds must list at least one seed"),
        ({"seeds": [0, 0]}, "each once"),
    ],
)
def test_bad_compare_params_are_rejected(section, message):
    from rarl_core.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match=message):
        config_with({"compare": section})
