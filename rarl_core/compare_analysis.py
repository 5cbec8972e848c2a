"""`rarl compare`, second half: each trained unit evaluated (per-question scores, diagnostics, judge), and every unit
read together into the numbers of the report: accuracy with intervals over seeds and questions, paired
differences, a verdict per claim of the paper, diagnostics and training summaries. JSON-ready throughout.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rarl_core.compare import CLAIMS, CONTROL, REFUTED, SFT, SUPPORTED, UNRESOLVED, compared_pairs
from rarl_core.config import Config, ConfigError
from rarl_core.diagnostics import cell_diagnostics
from rarl_core.metrics import bootstrap_ci, paired_bootstrap, question_means


def check_complete(cfg: Config, units: Sequence[Mapping]) -> None:
    """Every unit the params ask for was evaluated, and no other: a stale unit left from other seeds would skew."""
    wanted = {(SFT, None)} | {(m, s) for s in cfg.compare.seeds for m in (*cfg.grpo.variants, CONTROL)}
    found = {(u["model"], u["seed"]) for u in units}
    if missing := sorted(wanted - found, key=str):
        raise ConfigError(f"compare: units {missing} were not evaluated: run `rarl compare` (dvc repro compare/dvc.yaml)")
    if extra := sorted(found - wanted, key=str):
        raise ConfigError(f"compare: units {extra} are not in these params (compare.seeds, grpo.variants): remove "
                          f"their folders or run `rarl compare`, which replaces them")


def compute_time(units: Sequence[Mapping]) -> dict[str, float]:
    """Wall time of the comparison (first unit started to last unit finished, training and evaluation, whatever
    hosts ran them) and the seconds spent training and evaluating, summed over units."""
    spans = [(u["started"], u["finished"]) for u in units]
    spans += [(u["train"]["started"], u["train"]["finished"]) for u in units if u.get("train")]
    return {"wall_time_s": max(end for _, end in spans) - min(start for start, _ in spans),
            "train_seconds": sum(u["train"]["seconds"] for u in units if u.get("train")),
            "eval_seconds": sum(u["eval_seconds"] for u in units)}


def score_cell(records: Sequence[Mapping], judge=None) -> dict:
    """One model x dataset x prompt: per-question scores (what the statistics resample) and the diagnostics, with
    the judge's mean scores when a JudgeConfig is given."""
    diagnostics = cell_diagnostics(records)
    if judge is not None:
        from rarl_core.judge import judge_rows, summarize_scores  # the judge imports LiteLLM's client lazily

        judged = summarize_scores(judge_rows(list(records), judge, progress=False).scores)
        diagnostics |= {"judge_reasoning": judged["mean_reasoning"], "judge_correctness": judged["mean_correctness"]}
    return {"scores": question_means(records), "diagnostics": diagnostics}


def evaluate_unit(cfg: Config, model: str, seed: int | None, path: str | Path, sets: Mapping, templates: Mapping,
                  train: dict | None = None) -> tuple[dict, dict]:
    """Evaluate one trained model (the evaluate stage's generation and scoring, the `evaluate:` settings) on every
    set x prompt, with the real images and each image control. Returns the unit (model, seed, train summary, scored
    cells: a cell's `controls` hold each control's per-question scores) and its predictions by dataset, prompt and
    control (None: the real images)."""
    from rarl_core.evaluate import evaluate_model

    predictions: dict[str, dict[str, dict[str | None, list[dict]]]] = {}

    def keep(dataset: str, prompt: str, records: list[dict], control: str | None) -> None:
        predictions.setdefault(dataset, {}).setdefault(prompt, {})[control] = records

    started, began = time.perf_counter(), time.time()
    evaluate_model(cfg, model if seed is None else f"{model} seed {seed}", str(path), sets, templates, keep)
    judge = cfg.judge if cfg.compare.judge else None
    cells = {d: {p: score_cell(by_control[None], judge) | {
        "controls": {c: {"scores": question_means(records)} for c, records in by_control.items() if c is not None}}
        for p, by_control in per_p.items()} for d, per_p in predictions.items()}
    unit = {"model": model, "seed": seed, "train": train, "cells": cells, "eval_seconds": time.perf_counter() - started,
            "started": began, "finished": time.time()}
    return unit, predictions


# ----------------------------------------------------------------------------------------------------------------
# Analysis: every evaluated unit -> the numbers of the report
# ----------------------------------------------------------------------------------------------------------------


def verdict(ci_low: float, ci_high: float) -> str:
    """A claim that the first model is better: supported when the interval of the difference lies above 0, refuted
    when it lies below, otherwise not resolved (the data cannot tell the difference from noise)."""
    if ci_low > 0:
        return SUPPORTED
    if ci_high < 0:
        return REFUTED
    return UNRESOLVED


@dataclass
class Design:
    """What was compared: the variants in report order, the sets, the prompts, and the bootstrap size."""

    variants: list[str]  # GRPO variants
    in_domain: list[str]
    unseen: list[str]
    prompts: list[str]
    n_resamples: int = 2000
    models: list[str] = field(init=False)

    def __post_init__(self):
        self.models = [SFT, *self.variants, CONTROL]

    @property
    def datasets(self) -> list[str]:
        return [*self.in_domain, *self.unseen]


def score_table(units: Sequence[Mapping], model: str, datasets: Sequence[str], prompt: str) -> list[list[float]]:
    """Seeds x questions of one model under one prompt; the datasets' questions side by side (a group pooled)."""
    return [[s for d in datasets for s in u["cells"][d][prompt]["scores"]] for u in units if u["model"] == model]


def analyse(units: Sequence[Mapping], design: Design, baselines: Mapping[str, float]) -> dict:
    """All numbers of the report from the evaluated units (each: model, seed, cells[dataset][prompt] with per-question
    `scores` and `diagnostics`, optional training summary and reward curves). JSON-ready."""
    accuracy, paired = {}, {}
    for dataset in design.datasets:
        for prompt in design.prompts:
            for model in design.models:
                x = score_table(units, model, [dataset], prompt)
                if x:
                    accuracy.setdefault(dataset, {}).setdefault(prompt, {})[model] = _accuracy_cell(x, design)
            for a, b in compared_pairs(design.variants):
                xa, xb = score_table(units, a, [dataset], prompt), score_table(units, b, [dataset], prompt)
                if xa and xb:
                    cell = paired_bootstrap(xa, xb, design.n_resamples)
                    paired.setdefault(f"{a}-{b}", {}).setdefault(dataset, {})[prompt] = cell
    return {
        "design": dataclasses.asdict(design), "baselines": dict(baselines), "accuracy": accuracy, "paired": paired,
        "claims": _claims(units, design), "diagnostics": _diagnostics(units, design),
        "image_controls": _image_controls(units, design),
        "training": _training(units, design), "curves": _mean_curves(units, design),
    }


def _image_controls(units: Sequence[Mapping], design: Design) -> dict:
    """Per dataset x prompt x model: accuracy with each image control (mean, CI over seeds and questions) and the
    image-reliance gap, real minus control on the same questions (paired over seeds and questions)."""
    out: dict = {}
    for dataset in design.datasets:
        for prompt in design.prompts:
            for model in design.models:
                mine = [u for u in units if u["model"] == model]
                if not mine:
                    continue
                real = score_table(units, model, [dataset], prompt)
                for control in mine[0]["cells"][dataset][prompt].get("controls", {}):
                    x = [u["cells"][dataset][prompt]["controls"][control]["scores"] for u in mine]
                    low, high = bootstrap_ci(x, design.n_resamples)
                    gap = paired_bootstrap(real, x, design.n_resamples)
                    out.setdefault(dataset, {}).setdefault(prompt, {}).setdefault(model, {})[control] = {
                        "mean": float(np.mean(x)), "ci_low": low, "ci_high": high,
                        "reliance": {k: gap[k] for k in ("diff", "ci_low", "ci_high")}}
    return out


def _accuracy_cell(x: list[list[float]], design: Design) -> dict:
    per_seed = [float(np.mean(row)) for row in x]
    low, high = bootstrap_ci(x, design.n_resamples)
    return {"mean": float(np.mean(x)), "sd": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None,
            "ci_low": low, "ci_high": high, "per_seed": per_seed, "n_seeds": len(x), "n_questions": len(x[0])}


def _claims(units: Sequence[Mapping], design: Design) -> list[dict]:
    """Each claim under each prompt, on the questions of its group's sets pooled."""
    out = []
    for claim in CLAIMS:
        datasets = design.in_domain if claim.group == "in_domain" else design.unseen
        for prompt in design.prompts:
            xa = score_table(units, claim.better, datasets, prompt)
            xb = score_table(units, claim.worse, datasets, prompt)
            if not (datasets and xa and xb):
                continue
            d = paired_bootstrap(xa, xb, design.n_resamples)
            out.append({**dataclasses.asdict(claim), "prompt": prompt, "datasets": list(datasets),
                        "better_mean": float(np.mean(xa)), "worse_mean": float(np.mean(xb)), **d,
                        "verdict": verdict(d["ci_low"], d["ci_high"])})
    return out


def _diagnostics(units: Sequence[Mapping], design: Design) -> dict:
    """Each diagnostic per model x dataset x prompt, averaged over seeds (None where a unit had nothing to measure)."""
    out: dict = {}
    for model in design.models:
        mine = [u for u in units if u["model"] == model]
        for dataset in design.datasets:
            for prompt in design.prompts:
                cells = [u["cells"][dataset][prompt]["diagnostics"] for u in mine]
                if cells:
                    keys = dict.fromkeys(k for c in cells for k in c)
                    means = {k: _mean_or_none(c.get(k) for c in cells) for k in keys}
                    out.setdefault(model, {}).setdefault(dataset, {})[prompt] = means
    return out


def _mean_or_none(values) -> float | None:
    values = [float(v) for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _training(units: Sequence[Mapping], design: Design) -> dict:
    """Per trained model: mean training seconds, tokens and steps over seeds, and each reward's first and last value."""
    out = {}
    for model in design.models:
        trained = [u["train"] for u in units if u["model"] == model and u.get("train")]
        if not trained:
            continue
        summary = {key: _mean_or_none(t[key] for t in trained) for key in ("seconds", "tokens", "steps")}
        for key in dict.fromkeys(k for t in trained for k in t.get("curves", {})):
            curves = [t["curves"][key] for t in trained if t.get("curves", {}).get(key)]
            summary[f"{key} first"] = _mean_or_none(c[0][1] for c in curves)
            summary[f"{key} last"] = _mean_or_none(c[-1][1] for c in curves)
        out[model] = summary
    return out


def _mean_curves(units: Sequence[Mapping], design: Design) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Reward curves per GRPO variant, averaged over seeds at each logged step."""
    out: dict = {}
    for model in design.variants:
        by_key: dict[str, dict[int, list[float]]] = {}
        for unit in units:
            if unit["model"] == model and unit.get("train"):
                for key, curve in unit["train"].get("curves", {}).items():
                    for step, value in curve:
                        by_key.setdefault(key, {}).setdefault(int(step), []).append(value)
        if by_key:
            out[model] = {k: [(s, float(np.mean(v))) for s, v in sorted(steps.items())] for k, steps in by_key.items()}
    return out


def summary_metrics(results: Mapping) -> dict:
    """The headline numbers (DVC metrics file, MLflow): accuracy means, paired differences and verdicts."""
    out: dict = {"claims": {f"{c['key']}/{c['prompt']}": {"diff": c["diff"], "ci_low": c["ci_low"],
                                                          "ci_high": c["ci_high"], "verdict": c["verdict"]}
                            for c in results["claims"]}}
    out["accuracy"] = {f"{d}/{p}/{m}": cell["mean"] for d, per_p in results["accuracy"].items()
                       for p, per_m in per_p.items() for m, cell in per_m.items()}
    out["paired"] = {f"{pair}/{d}/{p}": cell["diff"] for pair, per_d in results["paired"].items()
                     for d, per_p in per_d.items() for p, cell in per_p.items()}
    out["image_reliance"] = {f"{d}/{p}/{m}/{c}": v["reliance"]["diff"]
                             for d, per_p in results.get("image_controls", {}).items() for p, per_m in per_p.items()
                             for m, per_c in per_m.items() for c, v in per_c.items()}
    out |= {key: results.get(key) for key in ("wall_time_s", "train_seconds", "eval_seconds")}
    return out
