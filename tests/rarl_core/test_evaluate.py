"""Evaluation: the metric table from completions (closed-answer edge cases counted right), sampling settings, paired
comparisons, and generation on a tiny Qwen2-VL built here: batched left-padded greedy output equals one-at-a-time
output, and a PEFT adapter folder is evaluated on the base it names."""

from __future__ import annotations


import pandas as pd
import pytest
import torch
from PIL import Image

from rarl_core.config import ConfigError
from rarl_core.evaluate import (
    cell_metrics,
    evaluate_model,
    generate,
    generation_kwargs,
    load_for_eval,
    paired_comparisons,
    score_rows,
)
from rarl_core.metrics import summarize
from rarl_core.prompts import load_templates
from tests.conftest import config_with, shipped_config


def frame(rows: list[tuple[str, str, list[str]]]) -> pd.DataFrame:
    """Questions (answer, answer_type, choices) in the prepared-data schema."""
    return pd.DataFrame([{"id": f"q{i}", "dataset": "d", "question": "Is there a lesion?", "answer": answer,
                          "answer_type": kind, "choices": choices, "modality": "CT" if i % 2 else "MRI"}
                         for i, (answer, kind, choices) in enumerate(rows)])


def gens(*completions: str) -> list[dict]:
    return [{"completion": c, "completion_tokens": len(c.split()), "seconds": 0.01} for c in completions]


# A closed-answer table: the cases a widely copied script gets wrong, and what each must count as.
CLOSED = [
    ("<think>x</think><answer>No.</answer>", "no", True),  # punctuation and case
    ("<think>x</think><answer>nodule seen</answer>", "no", False),  # "no" inside a word is not a no
    ("<think>x</think><answer>yes and no</answer>", "yes", False),  # both labels: no label, wrong
    ("<think>x</think><answer>maybe</answer>", "yes", False),  # hedge: wrong, still counted
    ("Yes", "yes", True),  # untagged reply (a base model) is read as the answer
    ("<think>x</think><answer>yes", "yes", True),  # cut off at the token limit
    ("<think>only thinking, never answering</think>", "no", False),  # no answer: wrong, still counted
    ("", "no", False),  # empty completion: wrong, still counted
]


def test_closed_answer_edge_cases_are_all_counted():
    data = frame([(ref, "closed", []) for _, ref, _ in CLOSED])
    records = score_rows(data, gens(*(c for c, _, _ in CLOSED)))
    assert [r["correct"] for r in records] == [expected for *_, expected in CLOSED]
    summary = summarize(records)
    assert summary["n"] == len(CLOSED)
    assert summary["closed_accuracy"] == pytest.approx(3 / len(CLOSED))  # not 3/3: the wrong ones count
    assert summary["format_rate"] == pytest.approx(4 / len(CLOSED))


def test_metric_table_by_answer_type_and_modality():
    data = frame([("yes", "closed", []), ("left lung", "open", []), ("CT", "multiple_choice", ["MRI", "CT"]),
                  ("no", "closed", [])])
    records = score_rows(data, gens("<think>a</think><answer>yes</answer>", "<think>a</think><answer>lung</answer>",
                                    "<think>a</think><answer>B</answer>", "<think>a</think><answer>yes</answer>"))
    metrics = cell_metrics(records, n_resamples=200)
    assert metrics["closed_accuracy"] == 0.5 and metrics["mc_accuracy"] == 1.0
    assert metrics["open_exact"] == 0.0 and metrics["open_recall"] == 0.5 and metrics["open_f1"] == pytest.approx(2 / 3)
    assert metrics["accuracy"] == 0.5
    assert metrics["accuracy_by_modality"] == {"CT": 0.0, "MRI": 1.0}  # odd rows are CT, both wrong
    assert metrics["accuracy_ci_low"] <= 0.5 <= metrics["accuracy_ci_high"]
    assert metrics["seconds_per_completion"] == pytest.approx(0.01)


def test_samples_get_unique_ids_and_questions_are_resampled_whole():
    data = frame([("yes", "closed", []), ("no", "closed", [])])
    records = score_rows(data, gens("yes", "no", "no", "no"))  # 2 samples per question, question-major
    assert [r["id"] for r in records] == ["q0#0", "q0#1", "q1#0", "q1#1"]
    assert [r["question_id"] for r in records] == ["q0", "q0", "q1", "q1"]
    assert cell_metrics(records, n_resamples=200)["accuracy"] == 0.75
    with pytest.raises(ValueError, match="multiple"):
        score_rows(data, gens("yes", "no", "no"))


def test_generation_kwargs_and_sampling_validation():
    assert generation_kwargs(config_with({"evaluate": {"temperature": 0.0}}).evaluate) == {"do_sample": False}
    sampled = config_with({"evaluate": {"temperature": 0.7, "top_p": 0.9, "num_samples": 4}}).evaluate
    assert generation_kwargs(sampled) == {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 0,
                                          "num_return_sequences": 4}
    with pytest.raises(ConfigError, match="num_samples > 1 needs temperature"):
        config_with({"evaluate": {"temperature": 0.0, "num_samples": 2}})
    with pytest.raises(ConfigError, match="evaluate.n_resamples must be >= 100"):
        config_with({"evaluate": {"n_resamples": 10}})
    with pytest.raises(ConfigError, match="extra_models"):
        config_with({"evaluate": {"extra_models": {"sft": "models/x"}}})


def test_paired_comparisons_pairs_later_minus_earlier():
    scores = {"sft": {"a": {"p": [1.0, 0.0, 0.0, 1.0]}}, "rl": {"a": {"p": [1.0, 1.0, 0.0, 1.0]}},
              "rarl": {"a": {"p": [1.0, 1.0, 1.0, 1.0]}}}
    paired = paired_comparisons(scores, ["sft", "rl", "rarl"], n_resamples=500)
    assert set(paired) == {"rl-vs-sft", "rarl-vs-sft", "rarl-vs-rl"}
    assert paired["rarl-vs-sft"]["a"]["p"]["diff"] == 0.5
    assert paired["rarl-vs-rl"]["a"]["p"]["ci_low"] >= 0


# --- generation on a tiny Qwen2-VL built here ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A random tiny Qwen2-VL, a LoRA adapter on it with non-zero weights, and a few images and questions."""
    from peft import LoraConfig, get_peft_model

    from rarl_core.modeling import load_model
    from rarl_core.tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    templates = load_templates()
    corpus = ["Is there a lesion? yes no", "What organ is shown? liver brain", *templates["inference"].values()] * 20
    small = config_with({"tiny_model": {"hidden_size": 64, "num_layers": 2, "intermediate_size": 128}}).tiny_model
    build_tiny_model(small, corpus, root / "model",
                     3136)
    torch.manual_seed(0)
    peft_model = get_peft_model(load_model(root / "model"), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                       init_lora_weights=False))
    peft_model.save_pretrained(root / "adapter")
    images = []
    for i, colour in enumerate([(200, 10, 10), (10, 200, 10), (10, 10, 200)]):
        images.append(str(root / f"img{i}.png"))
        Image.new("RGB", (112, 112), colour).save(images[-1])
    questions = ["Is there a lesion?", "What organ is shown in this image, and is it normal?", "Yes or no?"]
    data = pd.DataFrame([{"id": f"q{i}", "dataset": "d", "question": q, "answer": "yes", "answer_type": "closed",
                          "choices": [], "modality": "CT", "image_path": images[i]} for i, q in enumerate(questions)])
    return {"root": root, "model": str(root / "model"), "adapter": str(root / "adapter"), "data": data}


def test_batched_left_padded_generation_equals_one_at_a_time(tiny):
    cfg = shipped_config()
    model, processor = load_for_eval(tiny["model"], cfg.model, "cpu")
    prompts, images = list(tiny["data"]["question"]), list(tiny["data"]["image_path"])  # lengths differ: padding
    batched = generate(model, processor, prompts, images, max_new_tokens=12, batch_size=3)
    single = generate(model, processor, prompts, images, max_new_tokens=12, batch_size=1)
    assert [g["completion"] for g in batched] == [g["completion"] for g in single]
    assert all(g["completion_tokens"] > 0 for g in batched)


def test_adapter_folder_is_loaded_on_its_base(tiny):
    from peft import PeftModel

    from rarl_core.modeling import load_model

    cfg = shipped_config()
    merged, processor = load_for_eval(tiny["adapter"], cfg.model, "cpu")
    unmerged = PeftModel.from_pretrained(load_model(tiny["model"]), tiny["adapter"]).eval()
    base = load_model(tiny["model"]).eval()
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text",
                                          "text": "Is there a lesion?"}]}], add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[Image.open(tiny["data"]["image_path"][0])], return_tensors="pt")
    with torch.no_grad():
        got, want, plain = merged(**inputs).logits, unmerged(**inputs).logits, base(**inputs).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3)  # the adapter's weights were applied


def test_evaluate_model_samples_n_per_question_and_saves_every_cell(tiny):
    cfg = config_with({"evaluate": {"prompts": ["plain", "reasoning"], "max_new_tokens": 8, "batch_size": 2,
                                    "temperature": 1.0, "num_samples": 2, "seed": 3, "image_controls": ["blank"]}})
    saved = {}
    results = evaluate_model(cfg, "mine", tiny["adapter"], {"d": tiny["data"]}, load_templates(),
                             lambda dataset, prompt, records, control: saved.__setitem__((dataset, prompt, control),
                                                                                        records))
    assert set(saved) == {("d", p, c) for p in ("plain", "reasoning") for c in (None, "blank")}
    records = saved[("d", "plain", None)]
    cell = results["d"]["plain"]
    assert set(cell["controls"]) == {"blank"} and set(cell["image_reliance"]["blank"]) == {"diff", "ci_low", "ci_high"}
    assert "llava_med/closed_accuracy" in cell["published"]
    assert len(records) == 6 and len({r["id"] for r in records}) == 6
    assert {"completion", "parsed_answer", "correct", "seconds", "completion_tokens"} <= set(records[0])
    assert results["d"]["plain"]["n"] == 6
    again = {}
    evaluate_model(cfg, "mine", tiny["adapter"], {"d": tiny["data"]}, load_templates(),
                   lambda dataset, prompt, records, control: again.__setitem__((dataset, prompt, control), records))
    assert [r["completion"] for r in again[("d", "plain", None)]] == [r["completion"] for r in records]  # seeded
