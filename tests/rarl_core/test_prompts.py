"""Diversity prompting: styles, determinism, the multiple-choice rule, the inference prompts."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import config_with
from rarl_core.prompts import augment, inference_prompt, load_templates, question_text, target_text


def rows(n=20):
    out = []
    for i in range(n):
        mc = i % 4 == 0
        out.append({"id": f"d-{i}", "question": f"Question {i}?", "answer": "CT" if mc else "yes",
                    "answer_type": "multiple_choice" if mc else "closed",
                    "choices": ["CT", "MRI", "X-ray", "ultrasound"] if mc else [], "reasoning": "grey, so CT"})
    return pd.DataFrame(out)


def augment_cfg(**values):
    return config_with({"augment": values}).augment


def test_variants_are_distinct_styles_and_deterministic():
    cfg = augment_cfg(variants_per_question=3)
    first, second = augment(rows(), cfg, load_templates()), augment(rows(), cfg, load_templates())
    pd.testing.assert_frame_equal(first, second)
    assert len(first) == 60
    assert first.groupby("id").size().eq(1).all()  # ids are unique per variant
    per_question = first.assign(q=first["id"].str.rsplit("-", n=1).str[0]).groupby("q")["style"].nunique()
    assert per_question.eq(3).all()


def test_multiple_choice_style_only_where_choices_exist():
    out = augment(rows(), augment_cfg(variants_per_question=4), load_templates())
    mc = out[out["style"] == "multiple_choice"]
    assert len(mc) == 5 and (mc["answer_type"] == "multiple_choice").all()
    assert mc["prompt_text"].str.contains("Options: A. CT B. MRI C. X-ray D. ultrasound").all()


def test_style_weights_and_seed_change_the_mix():
    only_short = augment(rows(), augment_cfg(variants_per_question=1, styles={"short": 1.0, "explain": 0.0}), load_templates())
    assert set(only_short["style"]) == {"short"}
    a = augment(rows(), augment_cfg(variants_per_question=1, seed=1), load_templates())["style"].tolist()
    b = augment(rows(), augment_cfg(variants_per_question=1, seed=2), load_templates())["style"].tolist()
    assert a != b


def test_unknown_style_is_an_error():
    with pytest.raises(ValueError, match="poetic"):
        augment(rows(), augment_cfg(variants_per_question=1, styles={"poetic": 1.0}), load_templates())


def test_inference_prompts_and_targets():
    templates = load_templates()
    assert inference_prompt("plain", "Is this CT?", [], templates) == "Is this CT?"
    reasoning = inference_prompt("reasoning", "Is this CT?", [], templates)
    assert "<think>" in reasoning and reasoning.endswith("Is this CT?")
    with pytest.raises(ValueError, match="unknown inference prompt"):
        inference_prompt("chatty", "q", [], templates)
    assert question_text("Which?", ["a", "b"]) == "Which?\nOptions: A. a B. b"
    assert target_text("so CT", "CT") == "<think>so CT</think><answer>CT</answer>"
