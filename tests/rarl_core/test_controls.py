"""The image controls and the blind prior, on small tables whose answers are known."""

from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image

from rarl_core.controls import blind_prior, control_images, image_reliance, reliance_warnings, shuffled
from rarl_core.evaluate import stratified_sample


def test_shuffled_images_are_real_but_never_a_questions_own():
    paths = ["a", "a", "b", "c", "c", "d"]  # rows share pictures: none may get its own back
    for seed in range(20):
        out = shuffled(paths, seed)
        assert sorted(out) == sorted(paths)
        assert all(new != own for new, own in zip(out, paths))
    assert shuffled(paths, 3) == shuffled(paths, 3)


def test_blank_images_keep_each_pictures_size(tmp_path):
    for name, size in (("x.png", (112, 80)), ("y.png", (64, 64))):
        Image.new("RGB", size, (200, 10, 10)).save(tmp_path / name)
    frame = pd.DataFrame({"image_path": [str(tmp_path / "x.png"), str(tmp_path / "y.png")]})
    blank = control_images(frame, "blank", seed=0)
    assert [im.size for im in blank] == [(112, 80), (64, 64)]
    assert {im.getpixel((0, 0)) for im in blank} == {(128, 128, 128)}
    with pytest.raises(ValueError, match="unknown image control"):
        control_images(frame, "noise", seed=0)


def test_blind_prior_answers_the_commonest_training_answer_to_the_same_question():
    train = pd.DataFrame({"question": ["Is there a lesion?"] * 3 + ["Which side?"] * 2,
                          "answer": ["yes", "yes", "no", "left", "right"],
                          "answer_type": ["closed"] * 3 + ["open"] * 2})
    test = pd.DataFrame({"question": ["is there a lesion", "Which side?", "How many lesions?"],
                         "answer": ["yes", "right", "two"], "answer_type": ["closed", "open", "open"],
                         "choices": [[], [], []]})
    # the same text (case and punctuation aside): yes; "Which side?": left (seen first of the tie); unseen text:
    # the commonest open answer ("left")
    assert blind_prior(train, test) == [1.0, 0.0, 0.0]


def test_reliance_is_paired_and_warnings_are_plain():
    real, blank = [1.0] * 30 + [0.0] * 10, [1.0] * 20 + [0.0] * 20
    gap = image_reliance(real, blank, n_resamples=500)
    assert gap["diff"] == pytest.approx(0.25) and gap["ci_low"] > 0
    cell = {"accuracy": 0.75, "image_reliance": {"blank": gap}}
    assert reliance_warnings("sft", "b", "reasoning", cell, blind=0.5) == []
    flat = {"accuracy": 0.4, "image_reliance": {"blank": image_reliance(blank, blank, n_resamples=200)}}
    warnings = reliance_warnings("sft", "b", "reasoning", flat, blind=0.5)
    assert len(warnings) == 2 and "not shown to use the image" in warnings[0] and "blind prior" in warnings[1]


def test_a_subset_is_a_seeded_sample_stratified_by_answer_type():
    frame = pd.DataFrame({"answer_type": ["closed"] * 8 + ["open"] * 8 + ["multiple_choice"] * 4,
                          "id": range(20)})
    subset = stratified_sample(frame, 10, seed=0)
    assert subset["answer_type"].value_counts().to_dict() == {"closed": 4, "open": 4, "multiple_choice": 2}
    assert list(subset["id"]) == sorted(subset["id"])  # the set's own order
    assert subset.equals(stratified_sample(frame, 10, seed=0)) and not subset.equals(stratified_sample(frame, 10, 1))
    assert stratified_sample(frame, 0, seed=0) is frame
