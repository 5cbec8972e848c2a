"""The report of `rarl compare`: verdicts, setup, accuracy, paired differences, diagnostics and training, as sections of
tables rendered to Markdown and to one self-contained HTML page (rarl_core.report's renderers; figures from
rarl_core.plots). Reads only the analysis of rarl_core.compare, so a report can be re-rendered from results.json.
"""

from __future__ import annotations

from collections.abc import Mapping

from rarl_core.compare import CONTROL, REFUTED, SFT, SUPPORTED, UNRESOLVED
from rarl_core.compare_analysis import verdict
from rarl_core.plots import compare_accuracy_figure, differences_figure, reward_figure
from rarl_core.pages import Section, Table, page_html, page_markdown, pct, pts


def _ci(low: float | None, high: float | None, fmt=pct) -> str:
    return f"[{fmt(low)}, {fmt(high)}]"


def _label(model: str) -> str:
    return {SFT: "SFT (warm-up)", CONTROL: "SFT control (equal compute)"}.get(model, model)


def build_sections(results: Mapping, figures: bool = True) -> list[Section]:
    """The report in reading order: verdicts, setup, accuracy, paired differences, diagnostics, training."""
    design = results["design"]
    sections = [_verdict_section(results), _setup_section(results)]
    sections.append(_accuracy_section(results, design, figures))
    sections.append(_image_controls_section(results))
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
            f"Wall time of the whole comparison (first unit started to last unit finished): "
            f"{results.get('wall_time_s', 0) / 60:.1f} min; training {results.get('train_seconds', 0) / 60:.1f} min "
            f"and evaluation {results.get('eval_seconds', 0) / 60:.1f} min summed over units "
            f"({setup.get('host', 'this machine')}, the analysis host)."]
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
                             " ".join(pct(v) for v in c["per_seed"]),
                             pct(results["baselines"].get(dataset, {}).get("majority")),
                             pct(results["baselines"].get(dataset, {}).get("blind_prior"))])
    header = ["dataset", "prompt", "model", "seeds", "questions", "accuracy", "sd (seeds)", "95% CI", "per seed",
              "majority", "blind prior"]
    figure = compare_accuracy_figure(results, _label) if figures else None
    return Section("accuracy", "Accuracy", text, [Table(header, rows)], figure)


def _image_controls_section(results: Mapping) -> Section:
    """Does each model look at the image? Accuracy with real, blank and shuffled images, the reliance gap, warnings."""
    text = ["Accuracy in % with the real image, a blank (mid-grey) image of the same size and images shuffled across "
            "questions (means over seeds and questions); `real - blank` is the image-reliance gap in points with a "
            "bootstrap 95% interval over seeds and the same questions. A model that does not beat its own "
            "blank-image score, or the blind prior, is not shown to look at the image: its verdicts above say "
            "nothing about learning from images."]
    rows, warnings = [], []
    for dataset, per_prompt in results.get("image_controls", {}).items():
        blind = results["baselines"].get(dataset, {}).get("blind_prior")
        for prompt, per_model in per_prompt.items():
            for model, controls in per_model.items():
                real = results["accuracy"][dataset][prompt][model]["mean"]
                gaps = {c: v["reliance"] for c, v in controls.items()}
                rows.append([_label(model), dataset, prompt, pct(real), *(pct(controls.get(c, {}).get("mean"))
                                                                          for c in ("blank", "shuffled")),
                             *(f"{pts(g['diff'])} {_ci(g['ci_low'], g['ci_high'], pts)}" if (g := gaps.get(c))
                               else "-" for c in ("blank", "shuffled")), pct(blind)])
                if (g := gaps.get("blank")) and g["ci_low"] <= 0:
                    warnings.append(f"{_label(model)} on {dataset} ({prompt}) is no better with the real image than "
                                    f"with a blank one ({pts(g['diff'])} points {_ci(g['ci_low'], g['ci_high'], pts)})")
                if blind is not None and real <= blind:
                    warnings.append(f"{_label(model)} on {dataset} ({prompt}): {pct(real)}% does not beat the blind "
                                    f"prior ({pct(blind)}%)")
    if not rows:
        text.append("The image controls are off (evaluate.image_controls is empty).")
    text += [f"Warning: {w}." for w in warnings]
    header = ["model", "dataset", "prompt", "real", "blank", "shuffled", "real - blank [95% CI]",
              "real - shuffled [95% CI]", "blind prior"]
    return Section("image-controls", "Does each model look at the image?", text, [Table(header, rows)])


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
        figure = reward_figure(results["curves"])
    return Section("training", "Training", text, [Table(["model", "measure", "value"], rows)], figure)


TITLE = "Does RARL beat RL and SFT?"


def render_markdown(results: Mapping) -> str:
    return page_markdown(TITLE, build_sections(results, figures=False))


def render_html(results: Mapping) -> str:
    """One self-contained page: inline CSS, figures as base64 PNG data URIs, nothing fetched."""
    return page_html(TITLE, build_sections(results))
