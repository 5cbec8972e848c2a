"""The comparison report: every cell with its interval and baseline, the champion rule, and an HTML page that is
self-contained (no external asset; every figure a PNG that decodes) with every section present."""

from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image

from rarl_core.judge import RUBRIC_LABEL
from rarl_core.report import (
    SECTION_KEYS,
    ReportInputs,
    choose_champion,
    comparison_rows,
    read_inputs,
    render_html,
    render_markdown,
)
from rarl_core.plots import plot_tables
from tests.conftest import config_with


def cell(acc: float, low: float, high: float, n: int = 10, blank: float = 0.3) -> dict:
    """One evaluation cell as the evaluate stage writes it, its blank-image accuracy `blank`."""
    gap = {"diff": acc - blank, "ci_low": acc - blank - 0.1, "ci_high": acc - blank + 0.1}
    return {"n": n, "accuracy": acc, "accuracy_ci_low": low, "accuracy_ci_high": high, "format_rate": 1.0,
            "closed_accuracy": acc, "mean_completion_tokens": 12.0, "seconds_per_completion": 0.01,
            "accuracy_by_modality": {"CT": acc, "MRI": 1 - acc},
            "controls": {"blank": {"accuracy": blank, "format_rate": 1.0}, "shuffled": {"accuracy": 0.35}},
            "image_reliance": {"blank": gap, "shuffled": {"diff": acc - 0.35, "ci_low": 0.0, "ci_high": 0.2}},
            "published": {"llava_med/closed_accuracy": acc, "multimedeval/open_recall": 0.5}}


EVAL = {
    "baselines": {"a": {"majority": 0.4, "blind_prior": 0.45}, "b": {"majority": 0.3, "blind_prior": 0.3}},
    "models": {
        "base": {"a": {"plain": cell(0.1, 0.0, 0.2), "reasoning": cell(0.1, 0.0, 0.2)},
                 "b": {"plain": cell(0.9, 0.8, 1.0), "reasoning": cell(0.9, 0.8, 1.0)}},
        "sft": {"a": {"plain": cell(0.8, 0.6, 0.9), "reasoning": cell(0.7, 0.5, 0.9)},
                "b": {"plain": cell(0.5, 0.3, 0.7), "reasoning": cell(0.4, 0.2, 0.6)}},
        "rl": {"a": {"plain": cell(0.7, 0.5, 0.9), "reasoning": cell(0.8, 0.6, 0.9)},
               "b": {"plain": cell(0.4, 0.2, 0.6), "reasoning": cell(0.4, 0.2, 0.6, blank=0.45)}},
    },
    "gaps": {"sft": {"plain": -0.3, "reasoning": -0.3}},
    "paired": {"rl-vs-sft": {"b": {"reasoning": {"diff": 0.0, "ci_low": -0.1, "ci_high": 0.1}},
                             "a": {"reasoning": {"diff": 0.1, "ci_low": 0.02, "ci_high": 0.2}}}},
}
JUDGE = {"judge": RUBRIC_LABEL, "run": {"calls": 0, "cache_hits": 0},
         "models": {"sft": {"a": {"plain": {"mean_correctness": 0.5, "mean_reasoning": 0.25, "n_scored": 10,
                                            "n_errors": 0, "correctness_hist": [4, 1, 1, 4],
                                            "reasoning_hist": [5, 3, 2, 0]}}}}}
REWARDS = {"rl": {"reward": [(1, 1.0), (2, 1.2)], "rewards/format_reward/mean": [(1, 0.8), (2, 0.9)]}}


def inputs(**overrides) -> ReportInputs:
    base = {"evaluation": EVAL, "in_domain": ["a"], "unseen": ["b"], "candidates": ["sft", "rl"], "champion": "rl",
            "judge": JUDGE, "training": {"grpo-rl": {"reward_first": 0.5, "reward_last": 0.75}}, "rewards": REWARDS,
            "registered_model": "rarl-test", "registered": {"sft": "1", "rl": "2"}}
    return ReportInputs(**(base | overrides))


def test_rows_are_flat_and_carry_judge_scores():
    rows = comparison_rows(EVAL, ["a"], ["b"], JUDGE)
    assert len(rows) == 12
    sft_a = next(r for r in rows if (r["model"], r["dataset"], r["prompt"]) == ("sft", "a", "plain"))
    assert sft_a == {"model": "sft", "dataset": "a", "group": "in-domain", "prompt": "plain", "n": 10,
                     "accuracy": 0.8, "ci_low": 0.6, "ci_high": 0.9, "baseline": 0.4, "blind_prior": 0.45,
                     "blank": 0.3, "shuffled": 0.35, "format_rate": 1.0, "judge_correctness": 0.5,
                     "judge_reasoning": 0.25}
    assert all(r["judge_correctness"] is None for r in comparison_rows(EVAL, ["a"], ["b"]))


def test_read_comparison_rows_in_evaluation_order(tmp_path):
    import json

    cfg = config_with({"paths": {"metrics": str(tmp_path)}, "data": {"in_domain": ["starter_a"], "unseen": ["starter_b"]},
                       "evaluate": {"prompts": ["plain", "reasoning"]}})  # rows follow evaluate.prompts' order
    one = {"starter_b": {"reasoning": cell(0.5, 0.4, 0.6), "plain": cell(0.5, 0.4, 0.6)},
           "starter_a": {"plain": cell(0.5, 0.4, 0.6)}}
    models = {m: one for m in sorted(["base", "sft", "rl", "rarl"])}
    (tmp_path / "eval.json").write_text(json.dumps({"baselines": {"starter_a": {"majority": 0.3, "blind_prior": 0.3}}, "models": models}))
    rows = comparison_rows(*read_inputs(cfg)[:1], cfg.data.in_domain, cfg.data.unseen, read_inputs(cfg)[1])
    assert [r["model"] for r in rows[::3]] == ["base", "sft", "rl", "rarl"]  # as evaluated, not as JSON sorts them
    assert [(r["dataset"], r["prompt"]) for r in rows[:3]] == [("starter_a", "plain"), ("starter_b", "plain"),
                                                               ("starter_b", "reasoning")]
    assert rows[0]["judge_correctness"] is None
    judged = {"judge": RUBRIC_LABEL, "models": {"sft": {"starter_a": {"plain": {"mean_correctness": 0.5}}}}}
    (tmp_path / "judge.json").write_text(json.dumps(judged))
    evaluation, judge = read_inputs(cfg)
    rows = comparison_rows(evaluation, cfg.data.in_domain, cfg.data.unseen, judge)
    assert [r["judge_correctness"] for r in rows][::3] == [None, 0.5, None, None]


@pytest.mark.parametrize(
    ("accuracies", "expected"),
    [
        ({"sft": (0.8, 0.4), "rl": (0.7, 0.5)}, "rl"),  # best unseen wins, even with worse in-domain
        ({"sft": (0.8, 0.5), "rl": (0.7, 0.5)}, "sft"),  # unseen tie: higher in-domain
        ({"sft": (0.7, 0.5), "rl": (0.7, 0.5)}, "sft"),  # full tie: the earlier model
    ],
)
def test_champion_rule(accuracies, expected):
    models = {m: {"a": {"reasoning": {"accuracy": ind}}, "b": {"reasoning": {"accuracy": uns}}}
              for m, (ind, uns) in accuracies.items()}
    models["base"] = {"a": {"reasoning": {"accuracy": 0.0}}, "b": {"reasoning": {"accuracy": 1.0}}}
    evaluation = {"baselines": {}, "models": models}
    assert choose_champion(evaluation, ["sft", "rl"], ["a"], ["b"], "reasoning") == expected


def test_champion_is_never_base_and_none_without_unseen_sets():
    # base scores 0.9 on the unseen set; sft and rl tie there (40%), rl is better in-domain (80% vs 70%)
    assert choose_champion(EVAL, ["sft", "rl"], ["a"], ["b"], "reasoning") == "rl"
    assert choose_champion(EVAL, ["sft", "rl"], ["a"], [], "reasoning") is None


def test_markdown_sections_and_rows():
    text = render_markdown(inputs())
    assert text.startswith("# RARL comparison\n")
    assert "| sft | a | in-domain | plain | 10 | 80.0 [60.0, 90.0] | 40.0 | 100.0 | 50.0 | 25.0 |" in text
    assert "| sft | b | unseen | plain | 10 | 50.0 [30.0, 70.0] | 30.0 | 100.0 | - | - |" in text
    assert "| sft | plain | -30.0 |" in text
    assert "| rl - sft | a | reasoning | +10.0 [+2.0, +20.0] | rl better |" in text
    assert "| rl - sft | b | reasoning | +0.0 [-10.0, +10.0] | no evidence of a difference |" in text
    assert "| grpo-rl | reward_last | 0.75 |" in text
    assert "Champion: `rl` (mean unseen accuracy 40.0%, in-domain 80.0%" in text
    assert "highest mean accuracy over the unseen sets" in text
    assert "| sft | 40.0 | 70.0 | 1 |  |" in text and "| rl | 40.0 | 80.0 | 2 | champion |" in text
    assert "NOT an LLM judge" in text and "| sft | a | plain | 50.0 | 25.0 | 4/1/1/4 | 5/3/2/0 | - | - | 0 |" in text
    for title in ("## Champion", "## Accuracy", "## Does each model look at the image?", "## Published metrics",
                  "## Metrics by answer type", "## Accuracy by imaging modality",
                  "## Generalisation gap", "## Paired differences", "## Judge", "## Training"):
        assert title in text
    assert "data:image" not in text


def test_image_controls_and_published_metrics_are_reported_with_warnings():
    """real / blank / shuffled per model and set, the reliance gap with its interval, and a plain warning where a
    trained model does not beat its own blank-image score (rl on b: 40% real, 45% blank) or the blind prior."""
    text = render_markdown(inputs())
    assert "| sft | a | plain | 80.0 | 30.0 | 35.0 | +50.0 [+40.0, +60.0] | +45.0 [+0.0, +20.0] | 45.0 | 40.0 |" in text
    assert "Warning: rl on b (reasoning): no better with the real image than with a blank one (-5.0 points" in text
    assert "Warning: rl on b (reasoning): 40.0% does not beat the blind prior" not in text  # 40% > 30%
    assert "Warning: base" not in text  # the untrained base is not held to it
    assert "`llava_med`:" in text and "| sft | a | plain | 80.0 | - | - | 50.0 |" in text


def test_judge_of_the_evaluated_models_family_is_flagged():
    judge = {**JUDGE, "judge": "openai/qwen2.5-72b-instruct", "same_family": "qwen"}
    text = render_markdown(inputs(judge=judge))
    assert "Warning: the judge `openai/qwen2.5-72b-instruct` is of the same model family (qwen)" in text


def test_markdown_says_what_is_missing():
    text = render_markdown(inputs(judge=None, rewards={}, registered={}, champion=None))
    assert "judge stage has not run" in text
    assert "No GRPO metric history" in text
    assert "No model was registered" in text
    assert "No champion" in text


def test_html_is_self_contained_with_every_section_and_png_figures():
    page = render_html(inputs())
    assert page.startswith("<!DOCTYPE html>")
    for key in SECTION_KEYS:
        assert f'<section id="{key}">' in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # no external asset of any kind
    assert "<link" not in page and "<script" not in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 4  # accuracy, gap, judge distributions, reward curves
    for data in images:
        raw = base64.b64decode(data)
        assert raw.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(raw)) as image:
            image.verify()
    assert "Champion: <code>rl</code>" in page  # Markdown code spans rendered
    assert "&lt;think&gt;" in page  # text escaped, not injected


def test_html_without_judge_or_curves_still_renders():
    page = render_html(inputs(judge=None, rewards={}))
    assert page.count("data:image/png;base64,") == 2
    assert "judge stage has not run" in page


def test_plot_tables_for_dvc():
    report = inputs()
    rows = comparison_rows(report.evaluation, report.in_domain, report.unseen, report.judge)
    tables = plot_tables(rows, report.evaluation["gaps"], report.rewards)
    assert set(tables) == {"accuracy.csv", "gap.csv", "judge.csv", "rewards/rl.csv"}
    first = tables["accuracy.csv"][0]
    assert first["cell"] == "base · a · plain" and first["accuracy"] == 10.0 and first["baseline"] == 40.0
    assert tables["gap.csv"] == [{"cell": "sft · plain", "model": "sft", "prompt": "plain", "gap": -30.0},
                                 {"cell": "sft · reasoning", "model": "sft", "prompt": "reasoning", "gap": -30.0}]
    assert tables["rewards/rl.csv"] == [{"step": 1, "reward": 1.0, "format": 0.8}, {"step": 2, "reward": 1.2,
                                                                                    "format": 0.9}]


def test_registry_reuses_versions_and_moves_the_champion_alias(tmp_path):
    """Registering twice adds no version; `champion` follows the elected model; unlogged models are left out."""
    import mlflow

    from rarl_core import registry, tracking

    cfg = config_with({"mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                                       "artifact_root": str(tmp_path / "artifacts")}})
    parent = tracking.start_pipeline_run(cfg.mlflow, "hash")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "config.json").write_text("{}")
    for name, tags in (("sft", {"rarl.stage": "sft"}), ("merge: rl", {"rarl.stage": "merge", "rarl.variant": "rl"}),
                       ("merge: rarl", {"rarl.stage": "merge", "rarl.variant": "rarl"})):
        with tracking.child_run(cfg.mlflow, parent, name, tags):
            if name != "merge: rarl":  # rarl's weights were not logged (mlflow.log_models: false)
                mlflow.log_artifacts(str(tmp_path / "weights"), "model")
    first = registry.register_models(cfg, parent, ["sft", "rl", "rarl"], champion="rl")
    again = registry.register_models(cfg, parent, ["sft", "rl", "rarl"], champion="sft")
    assert first == again == {"sft": "1", "rl": "2"}
    client = mlflow.MlflowClient()
    name = cfg.report.registered_model
    assert len(client.search_model_versions(f"name = '{name}'")) == 2
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"  # moved from rl to sft
    assert client.get_model_version_by_alias(name, "rl").source.endswith("/model")
