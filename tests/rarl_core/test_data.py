"""The prepare stage as a whole: counts reconcile, a gutted or leaking dataset fails alone and leaves nothing behind,
images are normalised once and identically on any number of workers, and DVC round-trips the prepared data."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rarl_core.config import load_config
from rarl_core.data import DataError, prepare, prepare_dataset
from rarl_core.images import bound, load_image, phash
from rarl_core.leakage import PHASH_MAX_DISTANCE
from tests.conftest import REPO, copy_project, small_params, venv_env
from tests.rarl_core.test_readers import data_config, jpeg, png

# Fixtures are not imported (pytest would collect them twice); this module builds its own pictures.


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    from rarl_core.readers import _starter

    examples, _ = _starter(112, 0)
    bases = {}
    for e in examples:
        bases.setdefault(e.source.rsplit("#aug", 1)[0], e.image)
    return list(bases.values())[::7][:16]


def generic(folder: Path, rows: list[tuple[str, bytes | None, str]]) -> str:
    """A generic dataset: (split, image bytes or None for a missing file, question) per row; answers 'yes'."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (split, image, question) in enumerate(rows):
        if image is not None:
            (folder / f"{i}.img").write_bytes(image)
        lines.append(json.dumps({"image": f"{i}.img", "question": question, "answer": "yes", "split": split}))
    (folder / "rows.jsonl").write_text("\n".join(lines) + "\n")
    return str(folder / "rows.jsonl")


def test_starter_sets_reconcile_and_carry_a_card(tmp_path, capsys):
    data = load_config(REPO / "params.yaml").data
    cards, failures = prepare(data, tmp_path)
    assert not failures and list(cards) == ["starter_a", "starter_b"]
    for name, card in cards.items():
        folder = tmp_path / name
        frame = pd.read_parquet(folder / "data.parquet")
        assert card["rows_in"] == card["rows"] == len(frame) > 300 and card["rows_quarantined"] == 0
        assert sum(t["out"] for per in card["counts"].values() for t in per.values()) == len(frame)
        assert json.loads((folder / "card.json").read_text())["hashes"] == card["hashes"]
        assert (folder / "quarantine.jsonl").read_text() == "" and (folder / "README.md").is_file()
        assert frame["id"].is_unique and set(frame["answer_type"]) == {"closed", "open", "multiple_choice"}
        assert all(not leak["same_content"] and not leak["near_duplicate"] for leak in card["leakage"].values())
        with Image.open(folder / "images" / frame["image"][0]) as image:
            assert image.mode == "RGB" and image.size == (112, 112)
    assert set(cards["starter_a"]["by_split"]) == {"train", "test"} and set(cards["starter_b"]["by_split"]) == {"test"}
    assert "starter_a:train/starter_b" in cards["starter_b"]["leakage"]  # the unseen set was checked
    printed = capsys.readouterr().out
    assert "rows in =" in printed and "leakage train/test: 0 same image, 0 near-duplicate" in printed


def test_too_many_defects_fail_the_dataset_and_leave_nothing(tmp_path, pictures):
    rows = [("train", png(p), f"Is this image {i} normal?") for i, p in enumerate(pictures[:8])]
    rows += [("train", None, "Is the missing one normal?"), ("test", png(pictures[0])[:300], "Truncated?")]
    data = data_config({"own": {"format": "generic", "path": generic(tmp_path / "in", rows)}})
    with pytest.raises(DataError) as err:
        prepare_dataset("own", data.datasets["own"], data, tmp_path / "out" / "own")
    message = str(err.value)
    assert "2 of 10 rows quarantined (20.0% > data.max_quarantine_fraction 5.0%)" in message
    assert "missing_image 1, unreadable_image 1" in message and "first: rows.jsonl:9: missing_image" in message
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_same_picture_in_train_and_test_is_reported(tmp_path, pictures):
    p = pictures
    rows = [("train", png(p[0]), "A?"), ("train", png(p[1]), "B?"), ("test", png(p[0]), "C?"),
            ("test", jpeg(p[1], quality=80), "D?"), ("test", png(p[2]), "E?")]
    data = data_config({"own": {"format": "generic", "path": generic(tmp_path / "in", rows)}})
    card, _ = prepare_dataset("own", data.datasets["own"], data, tmp_path / "out" / "own")
    leak = card["leakage"]["train/test"]
    assert (leak["same_content"], leak["near_duplicate"], leak["rows_affected"]) == (1, 1, 2)
    assert {(e["row"], e["matches"]) for e in leak["examples"]} == {("rows.jsonl:3", "rows.jsonl:1"),
                                                                    ("rows.jsonl:4", "rows.jsonl:2")}


def test_unseen_set_sharing_a_training_image_fails_unless_downgraded(tmp_path, pictures, capsys):
    p = pictures
    datasets = {
        "mine": {"format": "generic", "path": generic(tmp_path / "mine", [("train", png(p[0]), "A?"),
                                                                          ("train", png(p[1]), "B?")])},
        "theirs": {"format": "generic", "path": generic(tmp_path / "theirs", [("test", jpeg(p[0], 75), "C?"),
                                                                              ("test", png(p[2]), "D?")])},
    }
    data = data_config(datasets, train=["mine"], unseen=["theirs"])
    cards, failures = prepare(data, tmp_path / "out")
    assert list(cards) == ["mine"] and list(failures) == ["theirs"]
    assert "theirs is an unseen evaluation set, but 1 of its images are in the training set" in failures["theirs"]
    assert "data.unseen_leakage: warn" in failures["theirs"] and not (tmp_path / "out" / "theirs").exists()

    data = data_config(datasets, train=["mine"], unseen=["theirs"], unseen_leakage="warn")
    cards, failures = prepare(data, tmp_path / "out")
    assert not failures
    assert cards["theirs"]["leakage"]["mine:train/theirs"]["near_duplicate"] == 1
    assert "leakage mine:train/theirs: 0 same image, 1 near-duplicate" in capsys.readouterr().out


def test_stage_writes_good_datasets_and_exits_nonzero_naming_every_failure(tmp_path, capsys):
    from tasks import prepare as stage

    (tmp_path / "slake" / "imgs").mkdir(parents=True)
    (tmp_path / "slake" / "train.json").write_text("[{")
    datasets = {
        "starter_a": {"format": "starter", "group": "A"},
        "starter_b": {"format": "starter", "group": "B"},
        "slake": {"format": "slake", "path": str(tmp_path / "slake"), "language": "en"},
        "gone": {"format": "generic", "path": str(tmp_path / "nowhere" / "rows.csv")},
    }
    params = small_params(tmp_path, data={"datasets": datasets})
    assert stage.main(["--params", str(params)]) == 1
    err = capsys.readouterr().err
    assert "2 of 4 datasets failed (the others are written)" in err
    assert "slake: " in err and "train.json: not valid JSON" in err and "gone: " in err and "rows.csv not found" in err
    prepared = Path(load_config(params).paths.prepared)
    assert sorted(p.name for p in prepared.iterdir()) == ["starter_a", "starter_b"]


def test_two_workers_write_the_same_bytes_as_one(tmp_path, pictures):
    big = [p.resize((400, 300)) for p in pictures[:8]]
    rows = [("train" if i % 3 else "test", png(p), f"Question {i}?") for i, p in enumerate(big)]
    path = generic(tmp_path / "in", rows)
    digests = []
    for workers in (1, 2):
        data = data_config({"own": {"format": "generic", "path": path}}, num_workers=workers)
        card, _ = prepare_dataset("own", data.datasets["own"], data, tmp_path / f"w{workers}" / "own")
        folder = tmp_path / f"w{workers}" / "own"
        digests.append({p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in folder.rglob("*") if p.is_file()})
    assert digests[0] == digests[1] and len(digests[0]) == 4 + 8


def test_images_are_rgb_bounded_and_16_bit_is_stretched():
    wide = bound(Image.new("RGB", (300, 150), "white"), 112)
    assert wide.size == (112, 56)
    assert bound(Image.new("RGB", (50, 40)), 112).size == (50, 40)  # never enlarged
    ramp = np.linspace(0, 4000, 64 * 64).reshape(64, 64).astype(np.uint16)  # a 12-bit X-ray in a 16-bit PNG
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="PNG")
    grey = np.asarray(load_image(buffer.getvalue()))
    assert grey.shape == (64, 64, 3) and grey.min() == 0 and grey.max() == 255
    rgba = Image.new("RGBA", (8, 8), (200, 10, 10, 0))
    assert load_image(png(rgba)).getpixel((0, 0)) == (0, 0, 0)  # transparent -> black, not a hidden colour


def test_phash_finds_reencoded_copies_but_not_other_pictures(pictures):
    def distance(a: Image.Image, b: Image.Image) -> int:
        return bin(phash(a) ^ phash(b)).count("1")

    for picture in pictures[:8]:
        copy = Image.open(io.BytesIO(jpeg(picture.resize((224, 224)), quality=75))).convert("RGB")
        assert distance(picture, bound(copy, 112)) <= PHASH_MAX_DISTANCE
    others = [distance(a, b) for i, a in enumerate(pictures) for b in pictures[i + 1 :]]
    assert min(others) > PHASH_MAX_DISTANCE


def test_dvc_push_then_pull_restores_the_prepared_data(tmp_path):
    """The default remote (.dvc-remote/ at the project root) round-trips a stage output; every other output
    (augmented data, models) goes the same way."""
    root = copy_project(tmp_path / "project")
    small_params(root, absolute_paths=False)

    def dvc(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=venv_env(), capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "local" in dvc("remote", "default")
    dvc("repro", "prepare")
    prepared = root / "data" / "prepared"
    before = {p.relative_to(root): p.read_bytes() for p in prepared.rglob("*") if p.is_file()}
    dvc("push", "prepare")
    assert any((root / ".dvc-remote").rglob("*"))
    shutil.rmtree(root / ".dvc" / "cache")
    shutil.rmtree(prepared)
    dvc("pull", "prepare")
    after = {p.relative_to(root): p.read_bytes() for p in prepared.rglob("*") if p.is_file()}
    assert after == before and len(before) > 400
    assert "Data and pipelines are up to date" in dvc("status", "prepare")


def test_png_bytes_depend_on_the_pixels_only():
    """Prepared images must be byte-identical on every machine (Pillow's zlib-ng output depends on the CPU): the
    encoder round-trips and gives these exact bytes, here and on CI."""
    from rarl_core.images import png_bytes

    pixels = (np.arange(64 * 48 * 3) * 37 % 251).astype(np.uint8).reshape(48, 64, 3)
    data = png_bytes(Image.fromarray(pixels))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), pixels)
    assert hashlib.sha256(data).hexdigest() == "4c19cd1ad8ce6d7cd5e4b5f73f6549ef1672fc7ec8cb7354b73de794158befd1"
    assert png_bytes(Image.fromarray(pixels).convert("L").convert("RGB")) != data
