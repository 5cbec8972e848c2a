"""The starter set's lesions are seen, not guessed: an SFT model trained by the stage scores lower with the
evaluation's blank-image control than with the real images (issue 12).

A small fixture, so that it runs in a couple of minutes: the stages as shipped (prepare, augment, tiny_model with
the shipped vision pretraining, sft), the training rows cut to the two families a model learns first (is there a
lesion, which quadrant), one prompt style, and a short SFT. Scored with the evaluation's own control images and
scorer on the same families of the in-domain test set.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from rarl_core import findings
from rarl_core.config import load_config
from tests.conftest import REPO, small_params
from tasks import augment, prepare, sft, tiny_model

FAMILIES = {findings.Q_PRESENT, findings.Q_QUADRANT, findings.Q_QUADRANT_MC}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("sees")
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    params = small_params(root, tiny_model={"vision_pretrain": shipped["tiny_model"]["vision_pretrain"]},
                          sft={"max_steps": 200, "batch_size": 16, "logging_steps": 50})
    for stage in (prepare, augment):
        assert stage.main(["--params", str(params)]) == 0
    cfg = load_config(params)
    rows = Path(cfg.paths.augmented) / "train.parquet"
    frame = pd.read_parquet(rows)
    frame[frame["question"].isin(FAMILIES)].to_parquet(rows)
    for stage in (tiny_model, sft):
        assert stage.main(["--params", str(params)]) == 0
    return cfg


def test_sft_model_scores_lower_with_a_blank_image_than_with_the_real_one(trained):
    from rarl_core.controls import control_images
    from rarl_core.evaluate import generate, load_for_eval, score_rows
    from rarl_core.prompts import inference_prompt, load_templates
    from rarl_core.schema import load_split

    cfg = trained
    frame = load_split(Path(cfg.paths.prepared), "starter_a", "test")
    frame = frame[frame["question"].isin(FAMILIES)].reset_index(drop=True)
    assert len(frame) >= 60
    model, processor = load_for_eval(cfg.paths.sft_model, cfg.model)
    templates = load_templates()
    prompts = [inference_prompt("reasoning", q, list(c), templates) for q, c in zip(frame["question"], frame["choices"])]

    def accuracy(images: list) -> float:
        records = score_rows(frame, generate(model, processor, prompts, images, 32, 32))
        return sum(r["correct"] for r in records) / len(records)

    real, blank = accuracy(list(frame["image_path"])), accuracy(control_images(frame, "blank", 0))
    print(f"\nSFT on {len(frame)} in-domain questions: real image {real:.3f}, blank image {blank:.3f}")
    assert real >= blank + 0.1
