"""The comparison report: base vs SFT vs GRPO on in-domain and unseen data, with the baseline beside every accuracy."""

from __future__ import annotations


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def comparison_rows(evaluation: dict, in_domain: list[str], unseen: list[str]) -> list[dict]:
    """Flatten eval metrics into one row per model x dataset x prompt."""
    rows = []
    for model, per_set in evaluation["models"].items():
        for dataset, per_prompt in per_set.items():
            for prompt, m in per_prompt.items():
                rows.append({
                    "model": model, "dataset": dataset, "group": "unseen" if dataset in unseen else "in-domain",
                    "prompt": prompt, "n": m.get("n"), "accuracy": m.get("accuracy"),
                    "ci": (m.get("accuracy_ci_low"), m.get("accuracy_ci_high")),
                    "format_rate": m.get("format_rate"), "baseline": evaluation["baselines"].get(dataset),
                })
    return rows


def generalisation_gaps(evaluation: dict, in_domain: list[str], unseen: list[str]) -> dict[str, dict[str, float]]:
    """Per model and prompt: mean unseen accuracy minus mean in-domain accuracy."""
    gaps: dict[str, dict[str, float]] = {}
    for model, per_set in evaluation["models"].items():
        prompts = {p for d in per_set.values() for p in d}
        for prompt in sorted(prompts):
            ind = [per_set[d][prompt]["accuracy"] for d in in_domain if d in per_set]
            uns = [per_set[d][prompt]["accuracy"] for d in unseen if d in per_set]
            if ind and uns:
                gaps.setdefault(model, {})[prompt] = sum(uns) / len(uns) - sum(ind) / len(ind)
    return gaps


def render_markdown(evaluation: dict, training: dict[str, dict], in_domain: list[str], unseen: list[str]) -> str:
    lines = ["# RARL comparison", "",
             "Accuracy in % with a bootstrap 95% interval; `baseline` is the majority-answer accuracy (a model that "
             "ignores the image). `format` is the share of answers in the trained `<think>`/`<answer>` format.", "",
             "| model | dataset | group | prompt | n | accuracy [95% CI] | baseline | format |",
             "|---|---|---|---|---|---|---|---|"]
    for r in comparison_rows(evaluation, in_domain, unseen):
        lo, hi = r["ci"]
        lines.append(f"| {r['model']} | {r['dataset']} | {r['group']} | {r['prompt']} | {r['n']} | "
                     f"{_pct(r['accuracy'])} [{_pct(lo)}, {_pct(hi)}] | {_pct(r['baseline'])} | {_pct(r['format_rate'])} |")
    gaps = generalisation_gaps(evaluation, in_domain, unseen)
    if gaps:
        lines += ["", "## Generalisation gap (unseen minus in-domain, points)", "", "| model | prompt | gap |", "|---|---|---|"]
        for model, per_prompt in gaps.items():
            for prompt, gap in per_prompt.items():
                lines.append(f"| {model} | {prompt} | {100 * gap:+.1f} |")
    if training:
        lines += ["", "## Training", "", "| stage | metric | value |", "|---|---|---|"]
        for stage, metrics in training.items():
            for key, value in sorted(metrics.items()):
                lines.append(f"| {stage} | {key} | {value:.4g} |" if isinstance(value, float) else f"| {stage} | {key} | {value} |")
    return "\n".join(lines) + "\n"
