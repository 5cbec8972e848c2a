"""The report's figures as PNG bytes (matplotlib, Agg backend), ready to embed in a self-contained HTML page, and the
plot data that `dvc plots show` reads.

Figures are built with the object-oriented API on an Agg canvas, never pyplot: no display, no global figure state,
nothing left open between calls. Each function takes plain data (what the report already computed) and returns PNG
bytes, so the report stays testable without looking at pixels.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rarl_core.files import atomic_dir

LEVEL_COLOURS = ("#d73027", "#fc8d59", "#91bfdb", "#4575b4")  # judge levels 0 (wrong) .. 3 (fully right)


def _figure(n_panels: int, width: float = 5.0, height: float = 3.4) -> tuple[Figure, list]:
    fig = Figure(figsize=(width * n_panels, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, list(axes)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def accuracy_figure(rows: Sequence[Mapping], models: Sequence[str], datasets: Sequence[str],
                    prompts: Sequence[str]) -> bytes:
    """Accuracy (%) per dataset and model with 95% CI error bars, one panel per prompt; the dashed line over each
    dataset is its majority-answer baseline, so a bar at the line learned nothing from the image."""
    fig, axes = _figure(len(prompts))
    cells = {(r["model"], r["dataset"], r["prompt"]): r for r in rows}
    width = 0.8 / max(1, len(models))
    for ax, prompt in zip(axes, prompts):
        for i, model in enumerate(models):
            xs, heights, errors = [], [], [[], []]
            for j, dataset in enumerate(datasets):
                row = cells.get((model, dataset, prompt))
                if row is None:
                    continue
                acc, low, high = (100 * row[k] for k in ("accuracy", "ci_low", "ci_high"))
                xs.append(j - 0.4 + width * (i + 0.5))
                heights.append(acc)
                errors[0].append(max(0.0, acc - low))
                errors[1].append(max(0.0, high - acc))
            ax.bar(xs, heights, width, yerr=errors, capsize=3, label=model)
        for j, dataset in enumerate(datasets):
            baseline = next((r["baseline"] for r in rows if r["dataset"] == dataset), None)
            if baseline is not None:
                ax.hlines(100 * baseline, j - 0.45, j + 0.45, colors="black", linestyles="dashed", linewidth=1)
        ax.set_xticks(range(len(datasets)), [f"{d}\n({_group(rows, d)})" for d in datasets])
        ax.set_ylim(0, 100)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"prompt: {prompt}")
    axes[-1].legend(fontsize="small", loc="upper right")
    return _png(fig)


def _group(rows: Sequence[Mapping], dataset: str) -> str:
    return next((r["group"] for r in rows if r["dataset"] == dataset), "")


def gap_figure(gaps: Mapping[str, Mapping[str, float]], prompts: Sequence[str]) -> bytes:
    """Generalisation gap (unseen minus in-domain accuracy, points) per model, a bar per prompt; below 0 = worse
    on the unseen sets."""
    fig, (ax,) = _figure(1, width=6.0)
    models = list(gaps)
    width = 0.8 / max(1, len(prompts))
    for i, prompt in enumerate(prompts):
        xs = [j - 0.4 + width * (i + 0.5) for j, m in enumerate(models) if prompt in gaps[m]]
        ax.bar(xs, [100 * gaps[m][prompt] for m in models if prompt in gaps[m]], width, label=prompt)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("unseen - in-domain (points)")
    ax.legend(title="prompt", fontsize="small")
    return _png(fig)


def judge_figure(judge_models: Mapping[str, Mapping[str, Mapping[str, Mapping]]], label: str) -> bytes:
    """Distribution of judge scores (share of answers at each level 0-3) per model x dataset x prompt, one panel for
    correctness and one for reasoning: a mean hides whether a model is uniformly mediocre or right half the time."""
    fig, axes = _figure(2, width=5.5, height=max(2.5, 0.3 * _n_cells(judge_models) + 1.2))
    names = [f"{m} · {d} · {p}" for m, per_set in judge_models.items() for d, per_p in per_set.items() for p in per_p]
    for ax, kind in zip(axes, ("correctness", "reasoning")):
        hists = [c[f"{kind}_hist"] for per_set in judge_models.values() for per_p in per_set.values()
                 for c in per_p.values()]
        left = [0.0] * len(hists)
        for level, colour in enumerate(LEVEL_COLOURS):
            shares = [100 * h[level] / max(1, sum(h)) for h in hists]
            ax.barh(range(len(hists)), shares, left=left, color=colour, label=str(level))
            left = [a + b for a, b in zip(left, shares)]
        ax.set_yticks(range(len(names)), names if kind == "correctness" else [""] * len(names), fontsize="small")
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("share of answers (%)")
        ax.set_title(f"{kind} ({label})")
    handles, labels = axes[-1].get_legend_handles_labels()
    fig.legend(handles, labels, title="score (0-3)", fontsize="small", loc="outside right upper")
    return _png(fig)


def _n_cells(judge_models: Mapping) -> int:
    return sum(len(per_p) for per_set in judge_models.values() for per_p in per_set.values())


def reward_figure(rewards: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]]) -> bytes:
    """GRPO training curves per variant: the weighted total reward and each named reward's mean, per step."""
    keys = sorted({k for curves in rewards.values() for k in curves}, key=lambda k: (k != "reward", k))
    fig, axes = _figure(max(1, len(keys)), width=4.0)
    for ax, key in zip(axes, keys):
        for variant, curves in rewards.items():
            if curves.get(key):
                steps, values = zip(*curves[key])
                ax.plot(steps, values, marker=".", label=variant)
        ax.set_title("total (weighted)" if key == "reward" else key.removeprefix("rewards/").removesuffix("/mean"))
        ax.set_xlabel("step")
    axes[0].set_ylabel("mean reward")
    axes[-1].legend(fontsize="small")
    return _png(fig)


def compare_accuracy_figure(results: Mapping, label=str) -> bytes:
    """`rarl compare`: one panel per dataset: a bar per model and prompt (mean, 95% CI), a dot per seed, the baseline dashed."""
    datasets = list(results["accuracy"])
    fig, axes = _figure(len(datasets), 5.5, 3.6)
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
                       label=label(model) if j == 0 else None)
                ax.plot([x] * len(c["per_seed"]), [100 * v for v in c["per_seed"]], "k.", markersize=4)
        baseline = results["baselines"].get(dataset, {}).get("majority")
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
    fig, (ax,) = _figure(1, 7.0, max(2.5, 0.28 * len(rows) + 1.0))
    for i, (_, c) in enumerate(rows):
        colour = "C2" if c["ci_low"] > 0 else "C3" if c["ci_high"] < 0 else "grey"
        ax.plot([100 * c["ci_low"], 100 * c["ci_high"]], [i, i], color=colour, linewidth=2)
        ax.plot([100 * c["diff"]], [i], "o", color=colour)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [name for name, _ in rows], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("accuracy difference (points), 95% CI")
    return _png(fig)


def plot_tables(rows: list[dict], gaps: Mapping[str, Mapping[str, float]],
                rewards: Mapping[str, Mapping[str, list]]) -> dict[str, list[dict]]:
    """CSV rows for DVC's plots, by file name under paths.plots: accuracy, gap, judge (in %), rewards per variant;
    from the report's comparison rows (rarl_core.report.comparison_rows), generalisation gaps and reward curves."""

    def in_percent(x: float | None) -> float | None:
        return None if x is None else round(100 * x, 2)

    tables = {
        "accuracy.csv": [{"cell": f"{r['model']} · {r['dataset']} · {r['prompt']}", "model": r["model"],
                          "dataset": r["dataset"], "prompt": r["prompt"], "accuracy": in_percent(r["accuracy"]),
                          "ci_low": in_percent(r["ci_low"]), "ci_high": in_percent(r["ci_high"]),
                          "baseline": in_percent(r["baseline"])}
                         for r in rows],
        "gap.csv": [{"cell": f"{model} · {prompt}", "model": model, "prompt": prompt, "gap": in_percent(gap)}
                    for model, per_prompt in gaps.items()
                    for prompt, gap in per_prompt.items()],
        "judge.csv": [{"cell": f"{r['model']} · {r['dataset']} · {r['prompt']}",
                       "correctness": in_percent(r["judge_correctness"]), "reasoning": in_percent(r["judge_reasoning"])}
                      for r in rows],
    }
    for variant, curves in rewards.items():
        steps = sorted({step for curve in curves.values() for step, _ in curve})
        by_key = {key.removeprefix("rewards/").removesuffix("/mean").removesuffix("_reward"): dict(curve)
                  for key, curve in curves.items()}
        tables[f"rewards/{variant}.csv"] = [{"step": s, **{k: v.get(s) for k, v in by_key.items()}} for s in steps]
    return tables


def write_plot_data(folder: Path, tables: dict[str, list[dict]]) -> None:
    """One CSV per plot under `folder` (replaced whole, so a removed variant leaves no stale curve)."""
    with atomic_dir(folder) as tmp:
        for name, rows in tables.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["cell"])
                writer.writeheader()
                writer.writerows(rows)
