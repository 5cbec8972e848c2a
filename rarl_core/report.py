"""The comparison report: every model on in-domain and unseen data, with what is needed to read it honestly.

Numbers come from eval.json (evaluate stage), judge.json (judge stage), the training summaries and the GRPO reward
curves. They are laid out once as sections of tables (`build_sections`), then rendered twice: Markdown (the table
users and the Prefect flow read) and one self-contained HTML page whose figures are embedded as base64 PNG, so the
page opens anywhere, offline, with no external asset. Beside every accuracy stand its bootstrap 95% interval and the
majority-answer baseline; differences between models come with paired intervals; the champion is elected by a rule
written into the report itself (`champion_rule`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rarl_core import plots
from rarl_core.config import RUBRIC_LABEL, Config
from rarl_core.pages import Section, Table, page_html, page_markdown, pct, pts

# ----------------------------------------------------------------------------------------------------------------
# Rows and the champion
# ----------------------------------------------------------------------------------------------------------------


def comparison_rows(evaluation: dict, in_domain: list[str], unseen: list[str], judge: dict | None = None) -> list[dict]:
    """One flat row per model x dataset x prompt (fractions in [0, 1]; judge means None without a judge run).

    Keys: model, dataset, group (in-domain / unseen), prompt, n, accuracy, ci_low, ci_high, baseline (majority
    answer), blind_prior, blank, shuffled (accuracy with the image controls), format_rate, judge_correctness,
    judge_reasoning. This is the comparison table as data (the Prefect flow publishes it).
    """
    judged = (judge or {}).get("models", {})
    rows = []
    for model, per_set in evaluation["models"].items():
        for dataset, per_prompt in per_set.items():
            for prompt, m in per_prompt.items():
                j = judged.get(model, {}).get(dataset, {}).get(prompt, {})
                rows.append({
                    "model": model, "dataset": dataset, "group": "unseen" if dataset in unseen else "in-domain",
                    "prompt": prompt, "n": m.get("n"), "accuracy": m.get("accuracy"),
                    "ci_low": m.get("accuracy_ci_low"), "ci_high": m.get("accuracy_ci_high"),
                    "baseline": evaluation["baselines"].get(dataset, {}).get("majority"),
                    "blind_prior": evaluation["baselines"].get(dataset, {}).get("blind_prior"),
                    "blank": m.get("controls", {}).get("blank", {}).get("accuracy"),
                    "shuffled": m.get("controls", {}).get("shuffled", {}).get("accuracy"),
                    "format_rate": m.get("format_rate"),
                    "judge_correctness": j.get("mean_correctness"), "judge_reasoning": j.get("mean_reasoning"),
                })
    return rows


def display_order(cfg: Config) -> tuple[list[str], list[str], list[str]]:
    """(models, datasets, prompts) in the order the evaluate stage runs them: base, sft, each GRPO variant, extra
    models (as rarl_core.evaluate.model_paths); in-domain then unseen sets; prompts as listed. The JSON metrics
    files store every level sorted by name; the report shows this order."""
    models = ["base", "sft", *cfg.grpo.variants, *cfg.evaluate.extra_models]
    return models, [*cfg.data.in_domain, *cfg.data.unseen], list(cfg.evaluate.prompts)


def _ordered(mapping: dict, keys: list[str]) -> dict:
    """`mapping` with `keys` first, in that order; any other key after them."""
    return {k: mapping[k] for k in keys if k in mapping} | mapping


def in_order(data: dict | None, models: list[str], datasets: list[str], prompts: list[str]) -> dict | None:
    """A copy of eval.json or judge.json data with models, datasets and prompts of "models" (and the models of
    "gaps") in the given order."""
    if data is None:
        return None
    out = dict(data)
    if "models" in data:
        out["models"] = {model: {dataset: _ordered(per_prompt, prompts)
                                 for dataset, per_prompt in _ordered(per_set, datasets).items()}
                         for model, per_set in _ordered(data["models"], models).items()}
    if "gaps" in data:
        out["gaps"] = {model: _ordered(per_prompt, prompts) for model, per_prompt in _ordered(data["gaps"], models).items()}
    return out


def read_inputs(cfg: Config) -> tuple[dict, dict | None]:
    """(eval.json, judge.json or None) from paths.metrics, in `display_order`."""
    metrics = Path(cfg.paths.metrics)
    evaluation = json.loads((metrics / "eval.json").read_text())
    judge = json.loads((metrics / "judge.json").read_text()) if (metrics / "judge.json").is_file() else None
    order = display_order(cfg)
    return in_order(evaluation, *order), in_order(judge, *order)


def champion_rule(prompt: str) -> str:
    """The champion rule, in words: written into the report and the registered model's description."""
    return (f"Among the trained models (SFT and each GRPO variant; never the base, which was not trained, nor an "
            f"extra model, which has no registered weights), the champion has the highest mean accuracy over the "
            f"unseen sets under the `{prompt}` prompt; ties go to the higher mean in-domain accuracy under the same "
            f"prompt, then to the earlier model (SFT, then the GRPO variants in params.yaml order). The MLflow "
            f"registry alias `champion` points at its version. Check the paired differences before reading a small "
            f"lead as a win.")


def mean_accuracy(per_set: dict, datasets: list[str], prompt: str) -> float | None:
    """Mean accuracy of one model over `datasets` under `prompt` (datasets it was not evaluated on are skipped)."""
    values = [per_set[d][prompt]["accuracy"] for d in datasets if prompt in per_set.get(d, {})]
    return sum(values) / len(values) if values else None


def choose_champion(evaluation: dict, candidates: list[str], in_domain: list[str], unseen: list[str],
                    prompt: str) -> str | None:
    """The champion by `champion_rule`; None when no candidate was evaluated on an unseen set under `prompt`."""
    best, best_key = None, None
    for model in candidates:  # strict ">" keeps the earlier model on a full tie
        per_set = evaluation["models"].get(model, {})
        unseen_acc = mean_accuracy(per_set, unseen, prompt)
        if unseen_acc is None:
            continue
        in_domain_acc = mean_accuracy(per_set, in_domain, prompt)
        key = (unseen_acc, -1.0 if in_domain_acc is None else in_domain_acc)
        if best_key is None or key > best_key:
            best, best_key = model, key
    return best


# ----------------------------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class ReportInputs:
    """Everything the report shows; the report stage gathers it from files and MLflow."""

    evaluation: dict
    in_domain: list[str]
    unseen: list[str]
    champion_prompt: str = "reasoning"
    candidates: list[str] = field(default_factory=list)  # trained models eligible for champion
    champion: str | None = None
    judge: dict | None = None  # judge.json
    training: dict[str, dict] = field(default_factory=dict)  # stage -> summary metrics
    rewards: dict[str, dict[str, list[tuple[int, float]]]] = field(default_factory=dict)  # variant -> key -> curve
    registered_model: str = ""
    registered: dict[str, str] = field(default_factory=dict)  # model -> registry version
    decoding: str = "decoding=greedy"  # the evaluate stage's decoding settings, as key=value pairs


SECTION_KEYS = ("champion", "accuracy", "image-controls", "published", "answer-types", "modality", "gap", "paired",
                "judge", "training")


def _models(evaluation: dict) -> list[str]:
    return list(evaluation["models"])


def _datasets(inputs: ReportInputs) -> list[str]:
    seen = {d for per_set in inputs.evaluation["models"].values() for d in per_set}
    return [d for d in [*inputs.in_domain, *inputs.unseen] if d in seen]


def _prompts(evaluation: dict) -> list[str]:
    return list(dict.fromkeys(p for per_set in evaluation["models"].values() for pp in per_set.values() for p in pp))


def _cells(evaluation: dict):
    for model, per_set in evaluation["models"].items():
        for dataset, per_prompt in per_set.items():
            for prompt, m in per_prompt.items():
                yield model, dataset, prompt, m


def champion_section(inputs: ReportInputs) -> Section:
    prompt = inputs.champion_prompt
    text = [f"Rule: {champion_rule(prompt)}"]
    if inputs.champion is None:
        text.append("No champion: no trained model was evaluated on an unseen set under this prompt.")
    else:
        per_set = inputs.evaluation["models"][inputs.champion]
        text.append(f"Champion: `{inputs.champion}` (mean unseen accuracy "
                    f"{pct(mean_accuracy(per_set, inputs.unseen, prompt))}%, in-domain "
                    f"{pct(mean_accuracy(per_set, inputs.in_domain, prompt))}%, `{prompt}` prompt).")
    if inputs.registered:
        text.append(f"MLflow registered model `{inputs.registered_model}`: one version per trained model, aliased by "
                    f"its name; alias `champion` = version {inputs.registered.get(inputs.champion, '-')}.")
    else:
        text.append("No model was registered in MLflow: no trained model's weights were logged as a run artifact "
                    "(mlflow.log_models is false, or the training runs are not in this tracking store).")
    rows = []
    for model in inputs.candidates:
        per_set = inputs.evaluation["models"].get(model, {})
        rows.append([model, pct(mean_accuracy(per_set, inputs.unseen, prompt)),
                     pct(mean_accuracy(per_set, inputs.in_domain, prompt)), inputs.registered.get(model, "-"),
                     "champion" if model == inputs.champion else ""])
    header = ["model", f"mean unseen accuracy ({prompt})", f"mean in-domain accuracy ({prompt})", "registry version", ""]
    return Section("champion", "Champion", text, [Table(header, rows)])


def accuracy_section(inputs: ReportInputs, rows: list[dict]) -> Section:
    text = ["Accuracy in % with a bootstrap 95% interval (questions resampled), real images (the controls: next "
            "section); `baseline` is the majority-answer accuracy of the set (a model that ignores the image); "
            "`format` is the share of answers in the trained "
            "`<think>`/`<answer>` format; the judge columns are mean judge scores in % (see Judge). "
            f"Decoding settings: {inputs.decoding}."]
    table = Table(["model", "dataset", "group", "prompt", "n", "accuracy [95% CI]", "baseline", "format",
                   "judge correctness", "judge reasoning"],
                  [[r["model"], r["dataset"], r["group"], r["prompt"], str(r["n"]),
                    f"{pct(r['accuracy'])} [{pct(r['ci_low'])}, {pct(r['ci_high'])}]", pct(r["baseline"]),
                    pct(r["format_rate"]), pct(r["judge_correctness"]), pct(r["judge_reasoning"])] for r in rows])
    return Section("accuracy", "Accuracy", text, [table], caption="Accuracy per dataset and model, 95% CI error bars; "
                   "dashed: majority-answer baseline.")


def image_controls_section(inputs: ReportInputs, rows: list[dict]) -> Section:
    """Does each model look at the image? Real vs blank vs shuffled images, the reliance gap, the blind baselines."""
    from rarl_core.controls import reliance_warnings

    text = ["Accuracy in % on the same questions with the real image, a blank (mid-grey) image of the same size, and "
            "images shuffled across questions; `real - blank` is the image-reliance gap in points with a paired "
            "bootstrap 95% interval. Beside them, what a model that never sees an image scores: the blind prior (the "
            "commonest training answer to the same question text) and the majority answer of the set. A model that "
            "does not beat its own blank-image score, or the blind prior, is not shown to look at the image "
            "(rarl_core/controls.py)."]
    table_rows, warnings = [], []
    for r in rows:
        m = inputs.evaluation["models"][r["model"]][r["dataset"]][r["prompt"]]
        reliance = m.get("image_reliance", {})
        gap = [f"{pts(d['diff'])} [{pts(d['ci_low'])}, {pts(d['ci_high'])}]" if (d := reliance.get(c)) else "-"
               for c in ("blank", "shuffled")]
        table_rows.append([r["model"], r["dataset"], r["prompt"], pct(r["accuracy"]), pct(r["blank"]),
                           pct(r["shuffled"]), *gap, pct(r["blind_prior"]), pct(r["baseline"])])
        if r["model"] != "base":
            warnings += reliance_warnings(r["model"], r["dataset"], r["prompt"], m, r["blind_prior"])
    if not any(m.get("controls") for *_, m in _cells(inputs.evaluation)):
        text.append("The image controls are off (evaluate.image_controls is empty): nothing here shows whether a "
                    "model looks at the image.")
    text += [f"Warning: {w}." for w in warnings]
    header = ["model", "dataset", "prompt", "real", "blank", "shuffled", "real - blank [95% CI]",
              "real - shuffled [95% CI]", "blind prior", "majority"]
    return Section("image-controls", "Does each model look at the image?", text, [Table(header, table_rows)])


def published_section(inputs: ReportInputs) -> Section:
    """The metrics of the papers users compare with, each under its own definition (rarl_core/published_metrics)."""
    from rarl_core.published_metrics import DEFINITIONS, POOLED_ACCURACY_LABEL

    keys = ["llava_med/closed_accuracy", "llava_med/open_recall", "multimedeval/closed_accuracy",
            "multimedeval/open_recall", "multimedeval/open_accuracy", "multimedeval/f1", "medevalkit/closed_accuracy",
            "medevalkit/open_exact", "medevalkit/open_f1", "rarl/accuracy_pooled"]
    text = ["Closed-question accuracy and open-question recall computed the way the papers users compare against "
            "compute them, so that a VQA-RAD, SLAKE or PathVQA run can be read beside MedGemma's, LLaVA-Med's or "
            "MedVLM-R1's published numbers: only numbers of the same definition are comparable. In %, real images; "
            "multiple-choice questions are outside these definitions. `rarl/accuracy_pooled` is this project's own "
            f"accuracy ({POOLED_ACCURACY_LABEL}), which no paper reports."]
    text += [f"`{name}`: {sentence}" for name, sentence in DEFINITIONS.items()]
    rows = [[model, dataset, prompt, *(pct(m.get("published", {}).get(k)) for k in keys)]
            for model, dataset, prompt, m in _cells(inputs.evaluation)]
    return Section("published", "Published metrics", text, [Table(["model", "dataset", "prompt", *keys], rows)])


def answer_types_section(inputs: ReportInputs) -> Section:
    text = ["Closed (yes/no) accuracy counts every closed question: wrong and unparseable answers are wrong. Open "
            "questions: exact match, token F1 and recall of the reference tokens. `-` = no question of that type."]
    keys = ["closed_accuracy", "open_exact", "open_f1", "open_recall", "mc_accuracy", "format_rate"]
    rows = [[model, dataset, prompt, *(pct(m.get(k)) for k in keys), f"{m.get('mean_completion_tokens', 0):.1f}",
             f"{m.get('seconds_per_completion', 0):.3f}"] for model, dataset, prompt, m in _cells(inputs.evaluation)]
    header = ["model", "dataset", "prompt", "closed acc", "open exact", "open F1", "open recall", "MC acc", "format",
              "mean tokens", "s / completion"]
    return Section("answer-types", "Metrics by answer type", text, [Table(header, rows)])


def modality_section(inputs: ReportInputs) -> Section:
    cells = list(_cells(inputs.evaluation))
    modalities = sorted({mod for *_, m in cells for mod in m.get("accuracy_by_modality", {})})
    rows = [[model, dataset, prompt, *(pct(m.get("accuracy_by_modality", {}).get(mod)) for mod in modalities)]
            for model, dataset, prompt, m in cells]
    return Section("modality", "Accuracy by imaging modality", ["Accuracy in % per modality; `-` = none in that set."],
                   [Table(["model", "dataset", "prompt", *modalities], rows)])


def gap_section(inputs: ReportInputs, figures: bool) -> Section:
    gaps = inputs.evaluation.get("gaps", {})
    rows = [[model, prompt, pts(gap)] for model, per_prompt in gaps.items() for prompt, gap in per_prompt.items()]
    text = ["Mean unseen accuracy minus mean in-domain accuracy, in points: how much of what a model learned "
            "transfers to image sources it never saw (RARL's generalisation claim). Negative = worse off-domain."]
    figure = plots.gap_figure(gaps, _prompts(inputs.evaluation)) if gaps and figures else None
    return Section("gap", "Generalisation gap (unseen minus in-domain, points)", text,
                   [Table(["model", "prompt", "gap"], rows)], figure, "Generalisation gap per model and prompt.")


def paired_section(inputs: ReportInputs) -> Section:
    text = ["Accuracy difference between two models on the same questions, in points, with a paired bootstrap 95% "
            "interval: an interval containing 0 is no evidence that either model is better."]
    rows = []
    for pair, per_set in inputs.evaluation.get("paired", {}).items():
        later, earlier = pair.split("-vs-", 1)
        for dataset, per_prompt in per_set.items():
            for prompt, d in per_prompt.items():
                reading = (f"{later} better" if d["ci_low"] > 0 else f"{earlier} better" if d["ci_high"] < 0
                           else "no evidence of a difference")
                rows.append([f"{later} - {earlier}", dataset, prompt,
                             f"{pts(d['diff'])} [{pts(d['ci_low'])}, {pts(d['ci_high'])}]", reading])
    return Section("paired", "Paired differences", text,
                   [Table(["comparison", "dataset", "prompt", "difference [95% CI]", "reading"], rows)])


def judge_section(inputs: ReportInputs, figures: bool) -> Section:
    if not inputs.judge:
        return Section("judge", "Judge", ["The judge stage has not run: no judge scores (`dvc repro judge`)."])
    label = inputs.judge.get("judge", "")
    if label == RUBRIC_LABEL:
        who = ("Judge: the offline rubric (`rubric (offline)`), a deterministic rule-based stand-in that lets the "
               "pipeline run with no network. It is NOT an LLM judge: set `judge.model` to a LiteLLM model (e.g. "
               "`gpt-4o-mini`, or `openai/<name>` with `judge.api_base`) for the paper's LLM-as-judge evaluation.")
    else:
        who = f"Judge: the LLM `{label}` through LiteLLM."
    text = [who, "Correctness (does the final answer agree with the reference) and reasoning (quality of the "
                 "explanation) on the 0-3 scale of the RARL authors' judge, shown as means in % of the maximum and as "
                 "counts of answers at each level 0/1/2/3.",
            "Judges in medicine favour long answers and their own model family's: `r(length)` is the Spearman "
            "correlation of each score with the completion's length in tokens (near 0 is what an unbiased judge "
            "shows when length does not track quality)."]
    if family := inputs.judge.get("same_family"):
        text.append(f"Warning: the judge `{label}` is of the same model family ({family}) as the evaluated models: it "
                    "may favour their outputs. Use a judge from another family.")
    rows = []
    for model, per_set in inputs.judge.get("models", {}).items():
        for dataset, per_prompt in per_set.items():
            for prompt, s in per_prompt.items():
                r = s.get("length_correlation", {})
                rows.append([model, dataset, prompt, pct(s.get("mean_correctness")), pct(s.get("mean_reasoning")),
                             "/".join(map(str, s.get("correctness_hist", []))),
                             "/".join(map(str, s.get("reasoning_hist", []))), _r(r.get("correctness")),
                             _r(r.get("reasoning")), str(s.get("n_errors", 0))])
    header = ["model", "dataset", "prompt", "correctness", "reasoning", "correctness 0/1/2/3", "reasoning 0/1/2/3",
              "correctness r(length)", "reasoning r(length)", "errors"]
    figure = plots.judge_figure(inputs.judge["models"], label) if inputs.judge.get("models") and figures else None
    return Section("judge", "Judge", text, [Table(header, rows)], figure,
                   "Judge score distributions: share of answers at each level, per model x dataset x prompt.")


def _r(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:+.2f}"


def training_section(inputs: ReportInputs, figures: bool) -> Section:
    rows = [[stage, key, f"{value:.4g}" if isinstance(value, float) else str(value)]
            for stage, metrics in inputs.training.items() for key, value in sorted(metrics.items())]
    if inputs.rewards:
        text = ["GRPO reward curves per variant, read from the MLflow metric history of the `grpo: <variant>` runs "
                "(total weighted reward and each named reward's mean), and each stage's summary."]
        figure = plots.reward_figure(inputs.rewards) if figures else None
    else:
        text = ["No GRPO metric history was found in MLflow (the runs were deleted or tracked elsewhere): only the "
                "stage summaries are shown."]
        figure = None
    return Section("training", "Training", text, [Table(["stage", "metric", "value"], rows)], figure,
                   "GRPO training rewards per step.")


def build_sections(inputs: ReportInputs, figures: bool = True) -> list[Section]:
    """The report's sections in reading order; `figures=False` skips drawing (the Markdown has no images)."""
    rows = comparison_rows(inputs.evaluation, inputs.in_domain, inputs.unseen, inputs.judge)
    sections = [champion_section(inputs), accuracy_section(inputs, rows), image_controls_section(inputs, rows),
                published_section(inputs), answer_types_section(inputs), modality_section(inputs),
                gap_section(inputs, figures), paired_section(inputs), judge_section(inputs, figures),
                training_section(inputs, figures)]
    if figures:
        sections[1].figure = plots.accuracy_figure(rows, _models(inputs.evaluation), _datasets(inputs),
                                                   _prompts(inputs.evaluation))
    return sections


# ----------------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------------

TITLE = "RARL comparison"


def render_markdown(inputs: ReportInputs) -> str:
    """The report as Markdown (no figures: they are in the HTML page)."""
    return page_markdown(TITLE, build_sections(inputs, figures=False))


def render_html(inputs: ReportInputs) -> str:
    """The report as one self-contained HTML page."""
    return page_html(TITLE, build_sections(inputs))
