"""Tests for the bundled starter set: determinism, schema, balance, no leakage, no duplicates, no patient identifiers.

The set is built once per module (under a minute); each test checks one property that downstream stages rely on.
"""

from __future__ import annotations

import collections
import re

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from rarl_core import findings, schema, starter_images
from rarl_core.starter import StarterExample, build_starter

IMAGE_SIZE = 112
MODALITIES_A = {starter_images.CT, starter_images.MRI, starter_images.US, starter_images.FUNDUS, starter_images.HISTO}
QUESTION_FAMILY = {
    findings.Q_PRESENT: "presence", findings.Q_COUNT: "count", findings.Q_COUNT_MC: "count",
    findings.Q_SIDE: "side", findings.Q_SIDE_YES_NO.format(side="left"): "side",
    findings.Q_SIDE_YES_NO.format(side="right"): "side", findings.Q_QUADRANT: "quadrant",
    findings.Q_QUADRANT_MC: "quadrant", findings.Q_POLARITY: "polarity",
    findings.Q_POLARITY_YES_NO.format(polarity="brighter"): "polarity",
    findings.Q_POLARITY_YES_NO.format(polarity="darker"): "polarity", findings.Q_LARGER_SIDE: "larger",
    findings.Q_LARGER_QUADRANT_MC: "larger",
}


@pytest.fixture(scope="module")
def built() -> tuple[list[StarterExample], list[str]]:
    return build_starter(image_size=IMAGE_SIZE, seed=0)


@pytest.fixture(scope="module")
def rows(built) -> list[StarterExample]:
    return built[0]


def _base(source: str) -> str:
    """The base 2D image a row's picture was augmented from."""
    return source.rsplit("#aug", 1)[0]


def _file(source: str) -> str:
    """The package file (or picture) a row came from, e.g. 'pydicom:CT_small.dcm'."""
    return source.split("#", 1)[0]


def _fields(row: StarterExample) -> tuple:
    return (row.group, row.split, row.question, row.answer, row.answer_type, row.choices, row.modality, row.organ,
            row.reasoning, row.source, row.image.mode, row.image.size, row.image.tobytes())


def test_report_counts(built):
    rows, skipped = built
    counts = collections.Counter((r.group, r.split) for r in rows)
    print("\nrows per group/split:", dict(counts), "skipped:", skipped)
    assert 1500 <= counts["A", "train"] <= 2000
    assert 300 <= counts["A", "test"] <= 450  # several hundred per group: a 10-point gap is resolved
    assert 350 <= counts["B", "test"] <= 450
    assert all(re.match(r"^\S+: .+", s) for s in skipped)


def test_every_question_family_in_every_split(rows):
    assert set(QUESTION_FAMILY.values()) == set(findings.FAMILY_WEIGHTS)
    for key in (("A", "train"), ("A", "test"), ("B", "test")):
        families = collections.Counter(QUESTION_FAMILY[r.question] for r in rows if (r.group, r.split) == key)
        assert set(families) == set(findings.FAMILY_WEIGHTS) and min(families.values()) >= 15, (key, families)


def test_no_two_rows_share_a_picture(rows):
    """Each row is its own augmentation, so lesion-free pictures of one background do not collapse into duplicates."""
    pictures = collections.Counter(r.image.tobytes() for r in rows)
    assert max(pictures.values()) == 1
    lesion_free = [r for r in rows if r.reasoning.startswith("no round spot")]
    assert len({_base(r.source) for r in lesion_free}) < len(lesion_free)  # backgrounds are reused...
    assert len({r.source for r in lesion_free}) == len(lesion_free)  # ...as distinct augmentations


def test_same_seed_gives_identical_rows_and_image_bytes(rows):
    again, _ = build_starter(image_size=IMAGE_SIZE, seed=0)
    assert len(again) == len(rows)
    assert [_fields(r) for r in again] == [_fields(r) for r in rows]


def test_another_seed_gives_other_images(rows):
    other, _ = build_starter(image_size=IMAGE_SIZE, seed=1)
    first = {r.source: r.image.tobytes() for r in rows}
    changed = sum(first.get(r.source) != r.image.tobytes() for r in other)
    assert changed > 0.9 * len(other)


def test_images_are_rgb_and_square(rows):
    assert all(r.image.mode == "RGB" and r.image.size == (IMAGE_SIZE, IMAGE_SIZE) for r in rows)
    # Not blank: every picture has some contrast.
    assert all(np.asarray(r.image).std() > 3 for r in rows[::7])


def test_schema_values(rows):
    for r in rows:
        assert r.group in ("A", "B")
        assert r.split in schema.SPLITS
        assert r.answer_type in schema.ANSWER_TYPES
        assert r.question and r.answer and r.modality and r.source
        if r.answer_type == "closed":
            assert r.answer in ("yes", "no") and r.choices == ()
        elif r.answer_type == "multiple_choice":
            assert len(r.choices) == 4 and len(set(r.choices)) == 4 and r.answer in r.choices
        else:
            assert r.choices == ()
    assert {r.split for r in rows if r.group == "B"} == {"test"}


def test_multiple_choice_answer_position_is_shuffled(rows):
    positions = collections.Counter(r.choices.index(r.answer) for r in rows if r.answer_type == "multiple_choice")
    assert len(positions) == 4 and min(positions.values()) > 0.15 * sum(positions.values())


def test_yes_no_balance(rows):
    for key in (("A", "train"), ("A", "test"), ("B", "test")):
        closed = [r.answer for r in rows if (r.group, r.split) == key and r.answer_type == "closed"]
        share = closed.count("yes") / len(closed)
        print(f"{key}: {len(closed)} yes/no questions, {share:.3f} yes")
        assert 0.4 <= share <= 0.6


def test_reasoning_is_short_names_a_cue_and_concludes_the_answer(rows):
    for r in rows:
        assert len(r.reasoning.split()) <= 20
        cue, conclusion = r.reasoning.rsplit(", so ", 1)
        assert conclusion == r.answer
        assert "spot" in cue


def test_answers_agree_with_the_cue_the_reasoning_names(rows):
    """The cue lists each lesion's quadrant: count, presence, side and quadrant answers must follow from it."""
    for r in rows:
        family, cue = QUESTION_FAMILY[r.question], r.reasoning.rsplit(", so ", 1)[0]
        places = re.findall(r"(upper left|upper right|lower left|lower right)", cue)
        if family == "count":
            assert int(r.answer) == len(places)
        elif family == "presence":
            assert (r.answer == "yes") == bool(places)
        elif family == "quadrant":
            assert places == [r.answer]
        elif family == "side" and r.answer_type == "open":
            assert len(places) == 1 and places[0].endswith(r.answer)
        elif family == "larger":  # "large ... at <q>, small one at <q>": the first place is the larger lesion's
            assert len(places) == 2 and places[0].endswith(r.answer)


def test_no_base_image_in_both_train_and_test(rows):
    train = {_base(r.source) for r in rows if (r.group, r.split) == ("A", "train")}
    test = {_base(r.source) for r in rows if (r.group, r.split) == ("A", "test")}
    assert train and test and not train & test


def test_group_b_files_never_appear_in_group_a(rows):
    files_a = {_file(r.source) for r in rows if r.group == "A"}
    files_b = {_file(r.source) for r in rows if r.group == "B"}
    assert files_b and not files_a & files_b


def test_every_modality_in_group_a_train_and_test(rows):
    for split in ("train", "test"):
        assert {r.modality for r in rows if (r.group, r.split) == ("A", split)} == MODALITIES_A


def test_blind_prior_is_low(rows):
    """Always giving the most common TRAINING answer of each question text must score far below 1.0."""
    prior = collections.defaultdict(collections.Counter)
    for r in rows:
        if r.split == "train":
            prior[r.question][r.answer] += 1
    for key in (("A", "test"), ("B", "test")):
        test = [r for r in rows if (r.group, r.split) == key]
        hits = sum(prior[r.question].most_common(1)[0][0] == r.answer for r in test)
        print(f"{key}: blind prior {hits / len(test):.3f} over {len(test)} rows")
        assert hits / len(test) < 0.5


def test_no_patient_identifiers_in_any_row(rows):
    files = sorted({_file(r.source).split(":", 1)[1] for r in rows if r.source.startswith("pydicom:")})
    assert files
    needles = set()
    for name in files:
        ds = pydicom.dcmread(get_testdata_file(name, download=False), stop_before_pixels=True)
        patient = str(ds.get("PatientName", ""))
        needles |= {patient} | {part for part in patient.split("^") if len(part) >= 2}
        patient_id = str(ds.get("PatientID", ""))
        if len(patient_id) >= 6:  # short IDs like '204' would match unrelated numbers
            needles.add(patient_id)
    needles.discard("")
    assert needles
    for r in rows:
        text = " | ".join([r.question, r.answer, *r.choices, r.modality, r.organ, r.reasoning, r.source])
        assert not any(needle in text for needle in needles), (r.source, needles)


def test_ct_pixels_are_hounsfield_units():
    """RescaleSlope/Intercept applied: air about -1000 HU, the body's centre soft tissue near 0-100 HU."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    hu, is_hu = starter_images._dicom_frame_pixels(ds, ds.pixel_array)
    assert is_hu
    assert np.percentile(hu, 1) < -700
    assert -100 < np.median(hu[44:84, 44:84]) < 150


def test_window_follows_the_dicom_linear_formula():
    values = np.array([-1000.0, 0.0, 40.0, 80.0, 1000.0])
    out = starter_images._window(values, centre=40, width=80)
    assert out[0] == 0.0 and out[-1] == 1.0
    assert abs(out[2] - 0.5) < 0.01 and 0.0 <= out[1] < out[2] < out[3] <= 1.0


def test_plane_follows_orientation_not_axis_order():
    """A volume stored as (S, R, A) must be cut along axis 0 for axial slices, not axis 2."""
    affine = np.array([[0, 2.0, 0, 0], [0, 0, 2.0, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]])  # axes: S, R, A
    codes = nib.aff2axcodes(affine)
    assert [starter_images._plane_of(c) for c in codes] == ["axial", "sagittal", "coronal"]


def test_slice_view_puts_superior_up_and_makes_pixels_square():
    """In a sagittal slice of an LAS volume with 2 x 2 x 4 mm voxels, the superior end is at the top and the
    slice is stretched to square pixels (3 voxels of 4 mm -> 6 rows), then padded to a square."""
    volume = np.full((4, 10, 3), 0.5, dtype=np.float32)  # axes L, A, S (LAS like anatomical.nii)
    volume[2, 5, 2] = 1.0  # in the most superior slab
    view = starter_images._slice_view(volume, 0, 2, ("L", "A", "S"), (2.0, 2.0, 4.0))
    assert view.shape == (10, 10)
    tissue_rows = np.flatnonzero(view.max(axis=1) > 0.1)
    assert len(tissue_rows) == 6  # 3 slabs x 4 mm at 2 mm pixels
    marker_rows = np.flatnonzero(view.max(axis=1) > 0.75)
    assert marker_rows.max() < tissue_rows.min() + 3  # the superior marker sits in the top half of the tissue
