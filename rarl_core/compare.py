"""Does RARL beat RL and SFT? The comparison behind `rarl compare`, built so that its answer can be believed.

The paper claims RARL beats SFT by about 7.8 points in-domain, by about 27% on unseen data, and conventional RL by
about 4% on unseen data. One run per model cannot settle claims of that size: two GRPO runs that differ only in their
seed often differ by more. So the comparison
- trains every GRPO variant (RL, RARL, ...) once per seed, from the same SFT warm-up;
- adds an equal-compute control: the warm-up continued with SFT for the same training seconds, or the same tokens,
  as that seed's GRPO runs. Without it, "RL beats SFT" may only mean "more training beats less";
- evaluates every model on the same questions (in-domain and unseen sets, each inference prompt), greedy;
- puts a bootstrap 95% interval on every number that resamples seeds, then questions, so that both seed-to-seed and
  question-to-question variation widen it, and compares models on the same questions (paired differences);
- reads each claim as "supported" (the interval of the difference excludes 0 in the claimed direction), "refuted"
  (it excludes 0 in the other direction) or "not resolved at this sample size";
- explains a result with diagnostics: format rate, consistency (does the answer agree with the model's own
  reasoning), collapse of yes/no answers onto one word, reward components over training, judge reasoning scores.

This module is the library: training one unit, scoring, statistics, and the report (Markdown, HTML, JSON). The
stage adapter tasks/compare.py runs the units in order and tracks them in MLflow.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers import TrainerCallback

from rarl_core.answers import choice_index, closed_label, normalize, parse_completion, reference_label
from rarl_core.config import Config
from rarl_core.metrics import bootstrap_ci, paired_bootstrap, question_means, summarize
from rarl_core.report import Section, Table, page_html, page_markdown, pct, pts
from rarl_core.rewards import think_conclusion

SFT = "sft"  # the warm-up model as it is
CONTROL = "sft_control"  # the warm-up continued with SFT for the GRPO runs' compute
NO_CHECKPOINTS = 10**9  # save_steps that never comes: a unit is short and is re-run whole if killed
CONTROL_MAX_STEPS = 10**6  # the control stops on its budget, never on this
CONTROL_WARMUP_STEPS = 10  # linear learning-rate warm-up of the control, in steps
SUPPORTED, REFUTED, UNRESOLVED = "supported", "refuted", "not resolved at this sample size"


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: `better` beats `worse` on the `group` sets (in_domain or unseen)."""

    key: str
    better: str
    worse: str
    group: str
    paper: str


CLAIMS = (
    Claim("rarl_vs_sft_in_domain", "rarl", SFT, "in_domain", "+7.78 points over SFT (reasoning-focused tasks)"),
    Claim("rarl_vs_sft_unseen", "rarl", SFT, "unseen", "about 27% better than SFT on unseen datasets"),
    Claim("rarl_vs_rl_unseen", "rarl", "rl", "unseen", "about 4% better than conventional RL on unseen datasets"),
)


def compared_pairs(variants: Sequence[str]) -> list[tuple[str, str]]:
    """(a, b) pairs whose paired difference a - b is reported: RARL - RL, each GRPO variant - SFT and - the control,
    and the control - SFT (what the extra compute alone buys)."""
    pairs = [("rarl", "rl")] if {"rarl", "rl"} <= set(variants) else []
    pairs += [(v, SFT) for v in variants] + [(v, CONTROL) for v in variants] + [(CONTROL, SFT)]
    return pairs


# ----------------------------------------------------------------------------------------------------------------
# Training one unit: a GRPO variant or the SFT control, for one seed
# ----------------------------------------------------------------------------------------------------------------


class RunRecorder(TrainerCallback):
    """Keeps every log of a training run (loss, reward components per step) and the tokens it put through the model.

    Tokens are TRL's count for both trainers: GRPO adds each sampled sequence's prompt and completion tokens to
    `state.num_input_tokens_seen`; SFT logs the running `num_tokens` (non-padding tokens of every batch).
    """

    def __init__(self) -> None:
        self.logs: list[dict] = []
        self.tokens = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        self.logs.append({"step": state.global_step, **logs})
        self.tokens = max(self.tokens, int(logs.get("num_tokens") or 0))

    def on_train_end(self, args, state, control, **kwargs):
        self.tokens = max(self.tokens, int(state.num_input_tokens_seen or 0))


class Budget(TrainerCallback):
    """Stops training once its budget is spent: `seconds` of training, or `tokens` through the model.

    Checked at every log, so the control logs every step (logging_steps 1) and overshoots by at most one step.
    """

    def __init__(self, seconds: float | None = None, tokens: int | None = None) -> None:
        self.seconds, self.tokens, self.started = seconds, tokens, time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        out_of_time = self.seconds is not None and time.perf_counter() - self.started >= self.seconds
        out_of_tokens = self.tokens is not None and int((logs or {}).get("num_tokens") or 0) >= self.tokens
        if out_of_time or out_of_tokens:
            control.should_training_stop = True


def train_grpo_unit(cfg: Config, variant: str, seed: int, augmented, sft_model: Path,
                    out_dir: Path) -> tuple[Path, dict, list[dict]]:
    """Train `variant` with `seed` exactly as the grpo stage does, but with no checkpoints and no tracking inside the
    trainer (the caller logs the recorded logs afterwards, so logging costs no training time).

    Returns the adapter folder, the training summary (seconds, tokens, steps, reward curves) and every log.
    """
    from rarl_core.grpo import train_grpo

    grpo = dataclasses.replace(cfg.grpo, seed=seed, save_steps=NO_CHECKPOINTS)
    recorder = RunRecorder()
    metrics = train_grpo(dataclasses.replace(cfg, grpo=grpo), variant, augmented, sft_model, out_dir / "adapter",
                         out_dir / "trainer", [], callbacks=[recorder])
    summary = {"seconds": metrics["train_runtime_s"], "tokens": recorder.tokens, "steps": metrics["global_step"],
               "curves": reward_curves(recorder.logs)}
    return out_dir / "adapter", summary, recorder.logs


def control_budget(mode: str, grpo_units: Sequence[Mapping]) -> dict:
    """The SFT control's budget for one seed: the mean training seconds or tokens of that seed's GRPO runs."""
    if mode == "wall_clock":
        return {"seconds": float(np.mean([u["seconds"] for u in grpo_units]))}
    return {"tokens": int(np.mean([u["tokens"] for u in grpo_units]))}


def train_control_unit(cfg: Config, seed: int, budget: dict, augmented, sft_model: Path,
                       out_dir: Path) -> tuple[Path, dict, list[dict]]:
    """Continue the warm-up with its own SFT recipe (sft.* values) until `budget` is spent. Returns the model folder,
    the training summary (with the budget) and every log.

    The learning rate climbs to sft.learning_rate over CONTROL_WARMUP_STEPS, then holds (GRPO's schedule too): a
    decaying schedule would need the number of steps in advance, which a wall-clock budget does not give. The
    warm-up is not optional: a fresh Adam moves every weight by about the learning rate at its first steps, and
    restarting at the peak rate without it took the tiny model to 0% accuracy in two steps.
    """
    from rarl_core.sft import train_sft

    sft = dataclasses.replace(cfg.sft, seed=seed, max_steps=CONTROL_MAX_STEPS, lr_scheduler="constant_with_warmup",
                              warmup_ratio=CONTROL_WARMUP_STEPS / CONTROL_MAX_STEPS, logging_steps=1,
                              save_steps=NO_CHECKPOINTS)
    model = dataclasses.replace(cfg.model, name_or_path=str(sft_model))
    recorder = RunRecorder()
    metrics = train_sft(dataclasses.replace(cfg, sft=sft, model=model), augmented, out_dir / "model",
                        out_dir / "trainer", [], callbacks=[Budget(**budget), recorder])
    summary = {"seconds": metrics["train_runtime_s"], "tokens": recorder.tokens, "steps": metrics["global_step"],
               "budget": budget}
    return out_dir / "model", summary, recorder.logs


def reward_curves(logs: Sequence[Mapping]) -> dict[str, list[tuple[int, float]]]:
    """Per-step curves of a GRPO run: the weighted total `reward` and each `rewards/<name>/mean`."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for log in logs:
        for key, value in log.items():
            if (key == "reward" or (key.startswith("rewards/") and key.endswith("/mean"))) and value is not None:
                curves.setdefault(key, []).append((int(log["step"]), float(value)))
    return curves


# ----------------------------------------------------------------------------------------------------------------
# Scoring one evaluated model: accuracy per question, and the diagnostics
# ----------------------------------------------------------------------------------------------------------------

# Words that frame a yes/no question rather than name what it asks about ("Is this a CT image?" asks about "ct").
_FRAME_WORDS = frozenset("""
is are was were do does did can could has have there this that these those it its a an the of in on at to for with
any some image images scan slice photograph picture view shown show shows seen visible present evidence
""".split())


def think_agrees(record: Mapping) -> bool | None:
    """Does the answer say what the model's own reasoning concluded? None when there is no think or no answer.

    The conclusion is the think's text after its last "so"/"therefore"/... (rewards.think_conclusion). Closed
    questions: the conclusion's yes/no when it states one ("no lesion is seen"), else whether it names what the
    question asks about ("so CT" for "Is this a CT image?" implies yes, "so MRI" implies no). Multiple choice: the
    same option. Open: every word of the answer appears in the conclusion.
    """
    parsed = parse_completion(record["completion"])
    if not parsed.think or not parsed.answer:
        return None
    conclusion = think_conclusion(parsed.think)
    if record["answer_type"] == "closed":
        said = closed_label(parsed.answer)
        return said is not None and said == _implied_label(conclusion, record["question"])
    if record["answer_type"] == "multiple_choice":
        said = choice_index(parsed.answer, record["choices"])
        return said is not None and said == choice_index(conclusion, record["choices"])
    words = set(normalize(parsed.answer).split())
    return bool(words) and words <= set(normalize(conclusion).split())


def _implied_label(conclusion: str, question: str) -> str:
    stated = closed_label(conclusion)
    if stated is not None:
        return stated
    subject = set(normalize(question).split()) - _FRAME_WORDS
    return "yes" if subject & set(normalize(conclusion).split()) else "no"


def cell_diagnostics(records: Sequence[Mapping]) -> dict[str, float | None]:
    """Accuracy and the diagnostics of one model x dataset x prompt (fractions; None when nothing to measure).

    consistency_rate: share of completions with a think and an answer whose answer agrees with the think.
    majority_share: share of the commoner word among the yes/no answers given (1.0 = every closed answer is the
    same word: collapse), beside reference_majority_share, the same for the true answers of those questions.
    """
    summary = summarize(records)
    agreement = [a for a in (think_agrees(r) for r in records) if a is not None]
    closed = [r for r in records if r["answer_type"] == "closed"]
    given = [label for label in (closed_label(r["parsed_answer"]) for r in closed) if label]
    truth = [label for label in (reference_label(r["answer"]) for r in closed) if label]
    return {
        "accuracy": summary.get("accuracy"),
        "format_rate": summary.get("format_rate"),
        "consistency_rate": float(np.mean(agreement)) if agreement else None,
        "yes_share": given.count("yes") / len(given) if given else None,
        "majority_share": _majority_share(given),
        "reference_majority_share": _majority_share(truth),
        "mean_completion_tokens": summary.get("mean_completion_tokens"),
    }


def _majority_share(labels: Sequence[str]) -> float | None:
    return Counter(labels).most_common(1)[0][1] / len(labels) if labels else None


def score_cell(records: Sequence[Mapping], judge=None) -> dict:
    """One model x dataset x prompt: per-question scores (what the statistics resample) and the diagnostics, with
    the judge's mean scores when a JudgeConfig is given."""
    diagnostics = cell_diagnostics(records)
    if judge is not None:
        from rarl_core.judge import judge_rows, summarize_scores

        judged = summarize_scores(judge_rows(list(records), judge, progress=False).scores)
        diagnostics |= {"judge_reasoning": judged["mean_reasoning"], "judge_correctness": judged["mean_correctness"]}
    return {"scores": question_means(records), "diagnostics": diagnostics}


def evaluate_unit(cfg: Config, model: str, seed: int | None, path: str | Path, sets: Mapping, templates: Mapping,
                  train: dict | None = None) -> tuple[dict, dict]:
    """Evaluate one trained model (the evaluate stage's generation and scoring, the `evaluate:` settings) on every
    set x prompt. Returns the unit (model, seed, train summary, scored cells) and its predictions by dataset, prompt."""
    from rarl_core.evaluate import evaluate_model

    predictions: dict[str, dict[str, list[dict]]] = {}

    def keep(dataset: str, prompt: str, records: list[dict]) -> None:
        predictions.setdefault(dataset, {})[prompt] = records

    started = time.perf_counter()
    evaluate_model(cfg, f"{model} seed {seed}", str(path), sets, templates, keep)
    judge = cfg.judge if cfg.compare.judge else None
    cells = {d: {p: score_cell(records, judge) for p, records in per_p.items()} for d, per_p in predictions.items()}
    unit = {"model": model, "seed": seed, "train": train, "cells": cells, "eval_seconds": time.perf_counter() - started}
    return unit, predictions


# ----------------------------------------------------------------------------------------------------------------
# Reading a difference
# ----------------------------------------------------------------------------------------------------------------


def verdict(ci_low: float, ci_high: float) -> str:
    """A claim that the first model is better: supported when the interval of the difference lies above 0, refuted
    when it lies below, otherwise not resolved (the data cannot tell the difference from noise)."""
    if ci_low > 0:
        return SUPPORTED
    if ci_high < 0:
        return REFUTED
    return UNRESOLVED


# ----------------------------------------------------------------------------------------------------------------
# Analysis: every trained and evaluated unit -> the numbers of the report
# ----------------------------------------------------------------------------------------------------------------


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
        "training": _training(units, design), "curves": _mean_curves(units, design),
    }


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
    out["wall_time_s"], out["cpu_time_s"] = results.get("wall_time_s"), results.get("cpu_time_s")
    return out


# ----------------------------------------------------------------------------------------------------------------
# The report: sections of tables, rendered as Markdown and as one self-contained HTML page
# ----------------------------------------------------------------------------------------------------------------


def _ci(low: float | None, high: float | None, fmt=pct) -> str:
    return f"[{fmt(low)}, {fmt(high)}]"


def _label(model: str) -> str:
    return {SFT: "SFT (warm-up)", CONTROL: "SFT control (equal compute)"}.get(model, model)


def build_sections(results: Mapping, figures: bool = True) -> list[Section]:
    """The report in reading order: verdicts, setup, accuracy, paired differences, diagnostics, training."""
    design = results["design"]
    sections = [_verdict_section(results), _setup_section(results)]
    sections.append(_accuracy_section(results, design, figures))
    sections.append(_paired_section(results, figures))
    sections.append(_diagnostics_section(results, design))
    sections.append(_training_section(results, figures))
    return sections


def _verdict_section(results: Mapping) -> Section:
    text = ["Each claim of the paper, tested on the questions of its group of sets (pooled), under each inference "
            "prompt. `difference` is the accuracy of the first model minus the second's, in points, with a bootstrap "
            "95% interval that resamples seeds, then questions; `relative` is the ratio minus 1, in %. A claim is "
            f"*{SUPPORTED}* when the interval lies above 0, *{REFUTED}* when it lies below 0, and "
            f"*{UNRESOLVED}* otherwise: the data cannot tell the difference from seed and question noise."]
    rows = [[f"{_label(c['better'])} > {_label(c['worse'])}, {c['group'].replace('_', '-')}", c["paper"], c["prompt"],
             f"{pct(c['better_mean'])} vs {pct(c['worse_mean'])}",
             f"{pts(c['diff'])} {_ci(c['ci_low'], c['ci_high'], pts)}",
             f"{pts(c['relative'])} {_ci(c['rel_low'], c['rel_high'], pts)}", f"**{c['verdict']}**"]
            for c in results["claims"]]
    header = ["claim", "paper", "prompt", "accuracy (%)", "difference (points) [95% CI]", "relative (%) [95% CI]",
              "verdict"]
    return Section("verdicts", "Verdicts", text, [Table(header, rows)])


def _setup_section(results: Mapping) -> Section:
    design, setup = results["design"], results.get("setup", {})
    text = [f"GRPO variants {', '.join(design['variants'])}; seeds {setup.get('seeds')}; the SFT warm-up is one "
            f"model (seed-independent), every other model is trained once per seed from it. The SFT control continues "
            f"the warm-up for the same {setup.get('control', '?').replace('_', ' ')} budget as the mean of that seed's "
            f"GRPO runs. In-domain: {', '.join(design['in_domain'])}; unseen: {', '.join(design['unseen'])}; "
            f"prompts: {', '.join(design['prompts'])}; decoding: {setup.get('decoding', 'greedy')}; judge: "
            f"{setup.get('judge', 'none')}. Bootstrap: {design['n_resamples']} resamples.",
            f"Wall time of the whole comparison: {results.get('wall_time_s', 0) / 60:.1f} min, CPU time "
            f"{results.get('cpu_time_s', 0) / 60:.1f} min ({setup.get('host', 'this machine')})."]
    return Section("setup", "Setup", text)


def _accuracy_section(results: Mapping, design: Mapping, figures: bool) -> Section:
    text = ["Accuracy in %: mean over seeds and questions, the standard deviation of the per-seed accuracies, the "
            "bootstrap 95% interval (seeds, then questions), each seed's accuracy, and the set's majority-answer "
            "baseline (a model that ignores the image)."]
    rows = []
    for dataset, per_prompt in results["accuracy"].items():
        group = "in-domain" if dataset in design["in_domain"] else "unseen"
        for prompt, per_model in per_prompt.items():
            for model, c in per_model.items():
                rows.append([f"{dataset} ({group})", prompt, _label(model), str(c["n_seeds"]), str(c["n_questions"]),
                             pct(c["mean"]), pct(c["sd"]), _ci(c["ci_low"], c["ci_high"]),
                             " ".join(pct(v) for v in c["per_seed"]), pct(results["baselines"].get(dataset))])
    header = ["dataset", "prompt", "model", "seeds", "questions", "accuracy", "sd (seeds)", "95% CI", "per seed",
              "baseline"]
    figure = accuracy_figure(results) if figures else None
    return Section("accuracy", "Accuracy", text, [Table(header, rows)], figure)


def _paired_section(results: Mapping, figures: bool) -> Section:
    text = ["Differences on the same questions, in points (relative in %), with bootstrap 95% intervals; the control "
            "rows ask whether GRPO beats plain SFT given the same compute."]
    rows = []
    for pair, per_dataset in results["paired"].items():
        a, b = pair.split("-", 1)
        for dataset, per_prompt in per_dataset.items():
            for prompt, d in per_prompt.items():
                rows.append([f"{_label(a)} - {_label(b)}", dataset, prompt,
                             f"{pts(d['diff'])} {_ci(d['ci_low'], d['ci_high'], pts)}",
                             f"{pts(d['relative'])} {_ci(d['rel_low'], d['rel_high'], pts)}",
                             _reading(a, b, d)])
    header = ["difference", "dataset", "prompt", "points [95% CI]", "relative % [95% CI]", "reading"]
    return Section("paired", "Paired differences", text, [Table(header, rows)],
                   differences_figure(results) if figures else None)


def _reading(a: str, b: str, d: Mapping) -> str:
    v = verdict(d["ci_low"], d["ci_high"])
    if v == UNRESOLVED:
        return "no evidence either way"
    return f"{_label(a if v == SUPPORTED else b)} better"


def _diagnostics_section(results: Mapping, design: Mapping) -> Section:
    text = ["Means over seeds, in %. `format`: completions in the trained <think>/<answer> format. `consistent`: "
            "completions whose answer agrees with the conclusion of their own think (of those with both). `yes`: "
            "share of 'yes' among the yes/no answers given; `majority`: share of the commoner of the two (100 = every "
            "closed answer is the same word: collapse), beside the same share for the true answers. `judge "
            "reasoning`: the judge's mean reasoning score (when `compare.judge` is on)."]
    rows = []
    for model, per_dataset in results["diagnostics"].items():
        for dataset, per_prompt in per_dataset.items():
            for prompt, m in per_prompt.items():
                rows.append([_label(model), dataset, prompt, pct(m.get("accuracy")), pct(m.get("format_rate")),
                             pct(m.get("consistency_rate")), pct(m.get("yes_share")), pct(m.get("majority_share")),
                             pct(m.get("reference_majority_share")), pct(m.get("judge_reasoning")),
                             pct(m.get("judge_correctness"))])
    header = ["model", "dataset", "prompt", "accuracy", "format", "consistent", "yes", "majority", "majority (truth)",
              "judge reasoning", "judge correctness"]
    return Section("diagnostics", "Diagnostics", text, [Table(header, rows)])


def _training_section(results: Mapping, figures: bool) -> Section:
    text = ["Mean over seeds: training seconds, tokens through the model (TRL's count: prompt + completion tokens of "
            "every training sequence), optimizer steps, and for GRPO each reward's mean at the first and last logged "
            "step (the figure shows the whole curves, averaged over seeds)."]
    rows = [[_label(model), key, f"{value:.4g}" if isinstance(value, float) else str(value)]
            for model, summary in results["training"].items() for key, value in summary.items()]
    figure = None
    if figures and results["curves"]:
        from rarl_core.plots import reward_figure

        figure = reward_figure(results["curves"])
    return Section("training", "Training", text, [Table(["model", "measure", "value"], rows)], figure)


# -- figures -------------------------------------------------------------------------------------------------------


def _canvas(n_panels: int, width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, n_panels, squeeze=False)[0])


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def accuracy_figure(results: Mapping) -> bytes:
    """One panel per dataset: a bar per model and prompt (mean, 95% CI), a dot per seed, the baseline dashed."""
    datasets = list(results["accuracy"])
    fig, axes = _canvas(len(datasets), 5.5, 3.6)
    for ax, dataset in zip(axes, datasets):
        prompts = list(results["accuracy"][dataset])
        models = list(dict.fromkeys(m for p in prompts for m in results["accuracy"][dataset][p]))
        width = 0.8 / max(1, len(models))
        for i, model in enumerate(models):
            for j, prompt in enumerate(prompts):
                c = results["accuracy"][dataset][prompt].get(model)
                if c is None:
                    continue
                x = j - 0.4 + width * (i + 0.5)
                err = [[100 * max(0.0, c["mean"] - c["ci_low"])], [100 * max(0.0, c["ci_high"] - c["mean"])]]
                ax.bar(x, 100 * c["mean"], width, yerr=err, capsize=3, color=f"C{i}",
                       label=_label(model) if j == 0 else None)
                ax.plot([x] * len(c["per_seed"]), [100 * v for v in c["per_seed"]], "k.", markersize=4)
        baseline = results["baselines"].get(dataset)
        if baseline is not None:
            ax.axhline(100 * baseline, color="black", linestyle="dashed", linewidth=1)
        ax.set_xticks(range(len(prompts)), prompts)
        ax.set_ylim(0, 100)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(dataset)
    axes[-1].legend(fontsize="small", loc="upper right")
    return _png(fig)


def differences_figure(results: Mapping) -> bytes:
    """Every paired difference with its 95% interval, one line each; an interval crossing 0 is no evidence."""
    rows = [(f"{a} - {b} · {d} · {p}", c) for pair, per_d in results["paired"].items() for d, per_p in per_d.items()
            for p, c in per_p.items() for a, b in [pair.split("-", 1)]]
    fig, (ax,) = _canvas(1, 7.0, max(2.5, 0.28 * len(rows) + 1.0))
    for i, (_, c) in enumerate(rows):
        colour = "C2" if c["ci_low"] > 0 else "C3" if c["ci_high"] < 0 else "grey"
        ax.plot([100 * c["ci_low"], 100 * c["ci_high"]], [i, i], color=colour, linewidth=2)
        ax.plot([100 * c["diff"]], [i], "o", color=colour)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [name for name, _ in rows], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("accuracy difference (points), 95% CI")
    return _png(fig)


# -- rendering -----------------------------------------------------------------------------------------------------

TITLE = "Does RARL beat RL and SFT?"


def render_markdown(results: Mapping) -> str:
    return page_markdown(TITLE, build_sections(results, figures=False))


def render_html(results: Mapping) -> str:
    """One self-contained page: inline CSS, figures as base64 PNG data URIs, nothing fetched."""
    return page_html(TITLE, build_sections(results))
