"""Prompt templates and diversity prompting.

Training questions are asked in several styles (explanation required, short answer, open-ended, multiple choice), so
the model learns the task rather than one phrasing; evaluation asks with a named inference prompt (plain, or RARL's
reasoning prompt). Templates live in rarl_core/prompts.yaml.
"""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from rarl_core.config import AugmentConfig

TEMPLATES_FILE = Path(str(resources.files("rarl_core").joinpath("prompts.yaml")))
LETTERS = "ABCDEFGHIJ"


def load_templates(path: Path = TEMPLATES_FILE) -> dict:
    templates = yaml.safe_load(Path(path).read_text())
    for section in ("styles", "inference"):
        for name, text in templates[section].items():
            if "{question}" not in text:
                raise ValueError(f"{path}: template {section}.{name} lacks the {{question}} placeholder")
    return templates


def question_text(question: str, choices: list[str]) -> str:
    """The question, followed by lettered options when it is multiple choice."""
    if not len(choices):
        return question
    options = " ".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))
    return f"{question}\nOptions: {options}"


def target_text(reasoning: str, answer: str) -> str:
    """The SFT target: the reasoning in <think>, the final answer in <answer>."""
    return f"<think>{reasoning}</think><answer>{answer}</answer>"


def user_message(text: str) -> list[dict]:
    """One user turn with the image first, as Qwen2-VL's chat template expects."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def inference_prompt(name: str, question: str, choices: list[str], templates: dict) -> str:
    if name not in templates["inference"]:
        raise ValueError(f"unknown inference prompt {name!r}; rarl_core/prompts.yaml defines {list(templates['inference'])}")
    return templates["inference"][name].format(question=question_text(question, choices))


def augment(train: pd.DataFrame, cfg: AugmentConfig, templates: dict) -> pd.DataFrame:
    """Expand each training question into `variants_per_question` prompts of distinct styles, drawn by weight.

    The multiple_choice style only applies to questions that have choices. Deterministic for a given seed.
    """
    unknown = set(cfg.styles) - set(templates["styles"])
    if unknown:
        raise ValueError(f"augment.styles names {sorted(unknown)}, not defined in rarl_core/prompts.yaml")
    rng = random.Random(cfg.seed)
    rows = []
    for row in train.to_dict("records"):
        styles = {s: w for s, w in cfg.styles.items() if w > 0 and (s != "multiple_choice" or len(row["choices"]))}
        chosen = _draw_distinct(rng, styles, cfg.variants_per_question)
        for style in chosen:
            prompt = templates["styles"][style].format(question=question_text(row["question"], row["choices"]))
            rows.append({**row, "id": f"{row['id']}-{style}", "style": style, "prompt_text": prompt,
                         "target": target_text(row["reasoning"], row["answer"])})
    return pd.DataFrame(rows)


def _draw_distinct(rng: random.Random, weights: dict[str, float], k: int) -> list[str]:
    """Weighted sampling without replacement (all styles when k >= their number)."""
    pool, chosen = dict(weights), []
    while pool and len(chosen) < k:
        style = rng.choices(list(pool), weights=list(pool.values()))[0]
        chosen.append(style)
        del pool[style]
    return chosen
