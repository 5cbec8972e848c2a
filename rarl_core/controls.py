"""Does a model look at the image? The controls that tell: the same questions with a blank image and with images
shuffled across questions, and a blind prior that never sees an image.

Text-only RL models keep most of their VQA-RAD accuracy on blank images (arXiv 2603.03437) and question-only
baselines do surprisingly well (SURE-VQA), so an accuracy means little until it is set beside these:
- blank: every image replaced by a uniform mid-grey one of the same size (the same number of image tokens, nothing
  to see); what is left is what the question and the model's priors give;
- shuffled: each question gets another question's image from the same set (a seeded permutation that never leaves
  a question with its own picture), so the image is real but the wrong one;
- blind prior: the commonest training answer for the same question text (else for the same answer type), scored by
  the same scorer; what memorising question -> answer pairs gives, beside the majority-answer baseline.
The image-reliance gap is accuracy with real images minus with a blank one, on the same questions, with a paired
bootstrap interval: a model that does not beat its own blank-image score, or the blind prior, is not shown to use
the image.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from rarl_core.answers import normalize, score_answer
from rarl_core.config import IMAGE_CONTROLS as CONTROLS
from rarl_core.metrics import paired_bootstrap

BLANK_GREY = (128, 128, 128)


def control_images(frame: pd.DataFrame, control: str, seed: int) -> list:
    """The images a control shows, row by row: blank PIL images of each original's size, or another row's path."""
    paths = list(frame["image_path"])
    if control == "blank":
        sizes = {}
        for path in dict.fromkeys(paths):
            with Image.open(path) as image:
                sizes[path] = image.size
        return [Image.new("RGB", sizes[path], BLANK_GREY) for path in paths]
    if control == "shuffled":
        return shuffled(paths, seed)
    raise ValueError(f"unknown image control {control!r}; known: {', '.join(CONTROLS)}")


def shuffled(paths: Sequence[str], seed: int) -> list[str]:
    """A seeded permutation of `paths` in which no row keeps its own picture (rows may share one: then none gets it
    back), when the set has at least two different pictures."""
    rng = np.random.default_rng(seed)
    out = [paths[i] for i in rng.permutation(len(paths))]
    for i in range(len(out)):
        if out[i] == paths[i]:  # swap with a row whose picture differs from both rows' own
            for j in rng.permutation(len(out)):
                if out[j] != paths[i] and out[i] != paths[j]:
                    out[i], out[j] = out[j], out[i]
                    break
    return out


def blind_prior(train: pd.DataFrame, test: pd.DataFrame) -> list[float]:
    """Per test question, the score of answering the commonest training answer of the same (normalised) question
    text, else the commonest of the same answer type; never an image. Ties go to the answer seen first."""
    by_question: dict[str, Counter] = defaultdict(Counter)
    by_type: dict[str, Counter] = defaultdict(Counter)
    for question, answer, kind in zip(train["question"], train["answer"], train["answer_type"]):
        by_question[normalize(question)][answer] += 1
        by_type[kind][answer] += 1
    scores = []
    for row in test.itertuples():
        prior = by_question.get(normalize(row.question)) or by_type.get(row.answer_type)
        guess = prior.most_common(1)[0][0] if prior else None
        scores.append(score_answer(guess, row.answer, row.answer_type, row.choices).score if guess else 0.0)
    return scores


def image_reliance(real: Sequence[float], control: Sequence[float], n_resamples: int) -> dict[str, float]:
    """Accuracy with real images minus with the control's, on the same questions: diff and its paired 95% CI."""
    paired = paired_bootstrap(real, control, n_resamples)
    return {key: paired[key] for key in ("diff", "ci_low", "ci_high")}


def reliance_warnings(model: str, dataset: str, prompt: str, cell: Mapping, blind: float | None) -> list[str]:
    """Plain sentences for a cell whose model is not shown to look at the image."""
    out = []
    blank = cell.get("image_reliance", {}).get("blank")
    if blank is not None and blank["ci_low"] <= 0:
        out.append(f"{model} on {dataset} ({prompt}): no better with the real image than with a blank one "
                   f"({100 * blank['diff']:+.1f} points, 95% CI [{100 * blank['ci_low']:+.1f}, "
                   f"{100 * blank['ci_high']:+.1f}]): it is not shown to use the image")
    if blind is not None and cell["accuracy"] <= blind:
        out.append(f"{model} on {dataset} ({prompt}): {100 * cell['accuracy']:.1f}% does not beat the blind prior "
                   f"({100 * blind:.1f}%, the commonest training answer to the same question)")
    return out
