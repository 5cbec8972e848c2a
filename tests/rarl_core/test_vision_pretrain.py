"""Tests for the tiny model's vision pretraining: targets line up with the image tokens, objects are not the
evaluation's lesions, and a short run trains the vision side only and saves a loadable model."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from rarl_core import vision_pretrain
from rarl_core.config import VisionPretrainConfig
from rarl_core.tiny_model import build_tiny_model
from tests.conftest import config_with

SIZE = 112
TINY = config_with({"tiny_model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
                                   "intermediate_size": 64, "vision_depth": 1, "vision_embed_dim": 32}}).tiny_model
PRETRAIN = VisionPretrainConfig(steps=4, batch_size=4, learning_rate=1e-3, images=8, natural_fraction=0.5, seed=0,
                                threads=1)


def test_patch_targets_follow_the_processors_patch_order():
    """One bright 14-px patch at row 2, column 5 of the 8x8 grid must be the patch whose target says so."""
    processor = Qwen2VLImageProcessorPil(min_pixels=SIZE * SIZE, max_pixels=SIZE * SIZE, merge_size=4)
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[28:42, 70:84] = 255
    patches = processor(images=[image], return_tensors="pt")["pixel_values"]
    brightest = int(patches.mean(dim=1).argmax())
    grid = np.zeros((8, 8), np.float32)
    grid[2, 5] = 1.0
    assert int(np.argmax(vision_pretrain._merge_order(grid.reshape(-1), 8, 4))) == brightest


def test_token_targets_are_row_major_shares_and_polarities():
    cover = np.zeros((SIZE, SIZE), np.float32)
    signed = np.zeros((SIZE, SIZE), np.float32)
    cover[60:100, 0:40] = 1.0  # lower left quadrant, dark
    signed[60:100, 0:40] = -1.0
    share, polarity = vision_pretrain._cells(cover, signed, 56, 0.1)
    assert share.argmax() == 2 and share[2] > 0.4 and list(polarity) == [0, 0, 2, 0]


def test_pretraining_objects_stand_out_and_are_counted():
    rng = np.random.default_rng(0)
    background = np.full((SIZE, SIZE, 3), 0.5, np.float32)
    for _ in range(30):
        image, cover, signed, count = vision_pretrain.draw_objects(background, rng)
        assert image.dtype == np.uint8 and image.shape == (SIZE, SIZE, 3)
        assert 0 <= count <= vision_pretrain.MAX_OBJECTS and (count == 0) == (cover.max() < 0.5)
        covered = cover > 0.9
        if covered.any():  # an object differs from the mid-grey background by at least the contrast floor
            assert np.abs(image[covered].mean(axis=-1) / 255 - 0.5).min() > 0.15


def test_no_pretraining_object_is_round():
    """The evaluation asks about round lesions; the pretraining must not draw them (ellipses are elongated)."""
    assert "circle" not in vision_pretrain.SHAPES and "disc" not in vision_pretrain.SHAPES
    outline = vision_pretrain._outline("ellipse", 50.0, 50.0, 10.0, 0.0, 1.6)
    xs, ys = zip(*outline)
    assert (max(xs) - min(xs)) / (max(ys) - min(ys)) >= 1.6 - 1e-6


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("tiny")
    build_tiny_model(TINY, ["is there a lesion yes no"] * 20, folder / "random", SIZE * SIZE)
    shutil.copytree(folder / "random", folder / "pretrained")
    backgrounds = [np.full((SIZE, SIZE, 3), level, np.float32) for level in (0.3, 0.5, 0.7)]
    result = vision_pretrain.pretrain_vision(folder / "pretrained", PRETRAIN, backgrounds, SIZE * SIZE)
    return folder, result


def test_pretraining_moves_the_vision_side_only(pretrained):
    folder, result = pretrained
    before, after = load_file(folder / "random" / "model.safetensors"), load_file(folder / "pretrained" / "model.safetensors")
    assert before.keys() == after.keys()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all("visual" in k for k in moved)
    assert any("merger" in k for k in moved) and any("blocks" in k for k in moved)
    assert result["seconds"] > 0 and np.isfinite(result["loss_share"])


def test_the_pretrained_model_loads_like_a_hub_checkpoint(pretrained):
    from rarl_core.modeling import load_model, load_processor

    folder, _ = pretrained
    model, processor = load_model(folder / "pretrained"), load_processor(folder / "pretrained", SIZE * SIZE, SIZE * SIZE)
    assert model.config.vision_config.spatial_merge_size == processor.image_processor.merge_size == 4
    assert processor._get_num_multimodal_tokens(image_sizes=[(SIZE, SIZE)])["num_image_tokens"][0] == 4


def test_pretraining_without_backgrounds_is_refused(tmp_path):
    build_tiny_model(TINY, ["a b"] * 10, tmp_path / "m", SIZE * SIZE)
    with pytest.raises(ValueError, match="needs group-A training backgrounds"):
        vision_pretrain.pretrain_vision(tmp_path / "m", PRETRAIN, [], SIZE * SIZE)
