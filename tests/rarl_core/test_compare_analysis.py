"""The comparison's analysis on data whose truth is known.

Verdicts: a clear win is supported, a clear loss refuted, noise not resolved, and a win that only some seeds show is
not resolved either (the seed resample is what catches it). From units to the report: each claim read, the image
controls set beside real images.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from rarl_core import compare_report
from rarl_core.compare import CONTROL, REFUTED, SFT, SUPPORTED, UNRESOLVED
from rarl_core.compare_analysis import Design, analyse, summary_metrics, verdict
from rarl_core.metrics import bootstrap_ci, paired_bootstrap


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
    results = analyse(units, design, {"a": {"majority": 0.5, "blind_prior": 0.55}, "b": {"majority": 0.5, "blind_prior": 0.5}})
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
    markdown = compare_report.render_markdown(results)
    assert "| rarl > SFT (warm-up), unseen |" in markdown and f"**{REFUTED}**" in markdown
    page = compare_report.render_html(results)
    assert page.count("data:image/png;base64,") == 3 and "<b>supported</b>" in page
    assert summary_metrics(results)["claims"]["rarl_vs_rl_unseen/reasoning"]["verdict"] == REFUTED


