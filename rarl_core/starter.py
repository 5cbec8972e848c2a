"""The bundled "starter" medical VQA set: round lesions drawn onto real medical images that ship inside PyPI packages.

Why this exists: the pipeline must run end to end offline, on a laptop, without the user downloading VQA-RAD or
SLAKE first. pydicom, nibabel and scikit-image carry a handful of genuine CT, MRI, ultrasound, fundus and histology
images as test data; they are the backgrounds.

Why findings, not modality questions: questions about the source image (modality, plane, organ) can only be
memorised per file, so nothing learnt on one group of files carries over to another (issue 12). Every row here asks
about round lesions drawn onto a fresh augmentation of a real image (rarl_core/findings.py: present?, how many,
which side, which quadrant, brighter or darker, where the larger of two is), which look the same on any background.
The answers are true by construction; the `reasoning` names the visible cue and ends ", so <answer>". The
modality and organ columns still say what the background is, for the per-modality breakdown of the report.

Why two groups: group A (train + in-domain test) and group B (files never seen in training, test only), as in
docs/starter-data.md. Group A's test rows are drawn on held-out base images (a tile of a slice, a cine frame, a
volume slice), so no background of the in-domain test was trained on; group B is the real generalisation test.

No duplicates: each row draws its own augmentation (crop, rotation, flip, window, gamma, jitter) of its base image,
so two rows never share a picture, the lesion-free ones included.

Privacy: from a DICOM file only the pixel data, Modality, rescale/window/palette tags and geometry are read. Burned-in
text (patient-like labels, dates) in the ultrasound files is cropped away before use.

Determinism: every random draw comes from a generator seeded by (seed, crc32 of a source name), so the same seed
gives byte-identical images and identical rows in a stable order, and adding a source does not shift the others.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np
from PIL import Image

from rarl_core import findings
from rarl_core.images import phash
from rarl_core.leakage import PHASH_MAX_DISTANCE
from rarl_core.starter_images import (
    Base,
    Skip,
    augment,
    dicom_frames,
    dicom_tiles,
    dicom_whole,
    seeded_rng,
    skimage_tiles,
    skimage_whole,
    volume_slices,
)

# Rows drawn per source file and split: every file weighs the same, whatever its number of base images (a volume's
# three planes share its rows), and several hundred test questions per group resolve a 10-point difference (paired
# 95% intervals of about +-6 points).
ROWS_PER_FILE = {("A", "train"): 220, ("A", "test"): 45, ("B", "test"): 100}

_TEST_FRACTION = 0.2  # share of each group-A source's base images held out for test
_BACKGROUND_TRIES = 4  # augmentations of a source tried per lesion plan and polarity
_PLANS = 8  # lesion plans tried per row before the source is declared unable to host the family


@dataclass(frozen=True)
class StarterExample:
    """One VQA row of the starter set (see rarl_core.schema for the column meanings)."""

    group: str  # "A" (in-domain: train + test) or "B" (unseen sources: test only)
    split: str  # "train" | "test"
    image: Image.Image  # RGB, image_size x image_size
    question: str
    answer: str  # for multiple choice the option text
    answer_type: str  # "closed" | "open" | "multiple_choice"
    choices: tuple[str, ...]
    modality: str  # of the background
    organ: str  # of the background, where known
    reasoning: str
    source: str  # "<file>#<base image>#aug<k>": the k-th augmentation of that base; the part before "#aug" names it


# ---------------------------------------------------------------------------------------------------------------
# Public entry point


def build_starter(image_size: int = 112, seed: int = 0) -> tuple[list[StarterExample], list[str]]:
    """Return (examples, skipped) where skipped lists "<source>: <reason>" for sources that could not be decoded.

    Group A sources are split into train/test by whole base images; group B sources are test only. Each source
    file gives ROWS_PER_FILE rows per split (shared among its families, e.g. a volume's planes), each on its own
    augmentation of one of that split's base images.
    """
    skipped: list[str] = []
    group_a = _collect(_group_a_sources(), skipped)
    group_b = _collect(_group_b_sources(), skipped)
    for name, bases in group_a.items():
        _assign_splits(name, bases, seed)
    examples: list[StarterExample] = []
    for (group, split), n_rows in ROWS_PER_FILE.items():  # training rows first: test rows must not look like them
        families = group_a if group == "A" else group_b
        per_file = collections.Counter(name.split("#", 1)[0] for name in families)
        train = None if split == "train" else np.array([phash(e.image) for e in examples], dtype=np.uint64)
        for name, bases in families.items():
            pool = [b for b in bases if b.split == split]
            if pool:
                share = round(n_rows / per_file[name.split("#", 1)[0]])
                examples.extend(_rows(name, pool, group, split, share, image_size, seed, train))
    return examples, skipped


def training_backgrounds(n: int, size: int, seed: int) -> list[np.ndarray]:
    """`n` lesion-free augmentations of group A's TRAINING base images (size x size x 3 floats in [0, 1]).

    The backgrounds of the tiny model's vision pretraining (rarl_core/vision_pretrain.py): it never sees a group-B
    file, a group-A test image or an evaluation lesion. Spread evenly over the source families, deterministic.
    """
    families = _collect(_group_a_sources(), [])
    pools = []
    for name, bases in families.items():
        _assign_splits(name, bases, seed)
        if train := [b for b in bases if b.split == "train"]:
            pools.append(train)
    rng = seeded_rng(seed, "vision-pretraining backgrounds")
    return [augment(pool[int(rng.integers(len(pool)))], rng, size) for pool in (pools[i % len(pools)] for i in range(n))]


def _group_a_sources():
    """(name, loader) pairs for group A; each loader returns the base images of one source family."""
    return (
        ("pydicom:CT_small.dcm", lambda: dicom_tiles("CT_small.dcm", None, (2, 2))),
        ("pydicom:MR_small.dcm", lambda: dicom_tiles("MR_small.dcm", None, (2, 2))),
        (
            "pydicom:examples_overlay.dcm",
            lambda: dicom_tiles("examples_overlay.dcm", None, (2, 3), organ="abdomen"),
        ),
        ("nibabel:example4d.nii.gz#axial", lambda: volume_slices("example4d.nii.gz", "axial", 8)),
        ("nibabel:example4d.nii.gz#sagittal", lambda: volume_slices("example4d.nii.gz", "sagittal", 8)),
        ("nibabel:example4d.nii.gz#coronal", lambda: volume_slices("example4d.nii.gz", "coronal", 8)),
        # Crop boxes (x0, y0, x1, y1) keep the scan area and drop burned-in text, labels and colour bars.
        ("pydicom:examples_ybr_color.dcm", lambda: dicom_frames("examples_ybr_color.dcm", (55, 15, 285, 205))),
        ("pydicom:examples_jpeg2k.dcm", lambda: dicom_tiles("examples_jpeg2k.dcm", (48, 110, 592, 335), (1, 4))),
        ("skimage:retina", lambda: skimage_tiles("retina", (5, 5), min_fundus=0.9)),
        ("skimage:immunohistochemistry", lambda: skimage_tiles("immunohistochemistry", (4, 4))),
    )


def _group_b_sources():
    """(name, loader) pairs for group B: files of the same modalities that group A never uses."""
    return (
        ("pydicom:J2K_pixelrep_mismatch.dcm", lambda: dicom_whole("J2K_pixelrep_mismatch.dcm", None)),
        ("nibabel:anatomical.nii#axial", lambda: volume_slices("anatomical.nii", "axial", 8)),
        ("nibabel:anatomical.nii#sagittal", lambda: volume_slices("anatomical.nii", "sagittal", 8)),
        ("nibabel:anatomical.nii#coronal", lambda: volume_slices("anatomical.nii", "coronal", 8)),
        ("pydicom:examples_palette.dcm", lambda: dicom_whole("examples_palette.dcm", (345, 66, 600, 152))),
        ("skimage:microaneurysms", lambda: skimage_whole("microaneurysms")),
    )


def _collect(sources, skipped: list[str]) -> dict[str, list[Base]]:
    """Run each loader; a source that cannot be decoded is recorded in `skipped` instead of failing the build."""
    families = {}
    for name, load in sources:
        try:
            families[name] = load()
        except Skip as why:
            skipped.append(f"{name}: {why}")
    return families


def _assign_splits(name: str, bases: list[Base], seed: int) -> None:
    """Hold out one contiguous run of base images (about 20%) for test; the rest train.

    Contiguous, because neighbouring cine frames and volume slices look alike: a run leaks only at its two ends.
    Frame and slice families also drop the base just outside each end of the run (a guard gap).
    """
    n = len(bases)
    if n == 0:
        return
    n_test = max(1, round(n * _TEST_FRACTION))
    start = int(seeded_rng(seed, name + "#split").integers(0, n - n_test + 1))
    for i, base in enumerate(bases):
        base.split = "test" if start <= i < start + n_test else "train"
    guards = {start - 1, start + n_test} if any(b.neighbours for b in bases) else set()
    bases[:] = [b for i, b in enumerate(bases) if i not in guards]


# ---------------------------------------------------------------------------------------------------------------
# Questions


def _rows(name: str, bases: list[Base], group: str, split: str, n_rows: int, size: int, seed: int,
          train_hashes: np.ndarray | None) -> list[StarterExample]:
    """`n_rows` rows of one source family and split: a finding family drawn by weight, then its lesions drawn onto
    a fresh augmentation of one of `bases` (another one when that background cannot show them), then asked.

    A test picture within PHASH_MAX_DISTANCE of a training picture (`train_hashes`) is drawn again: large lesions
    dominate the perceptual hash of a featureless background (the grey microaneurysms crop, a smooth retina tile),
    so the same lesion layout on two such backgrounds reads as a near-duplicate, which prepare's leakage check
    (rarl_core/data.py) rightly refuses in an unseen set.
    """
    rng = seeded_rng(seed, f"{name}#{split}#findings")
    families = list(findings.FAMILY_WEIGHTS)
    weights = np.array([findings.FAMILY_WEIGHTS[f] for f in families]) / sum(findings.FAMILY_WEIGHTS.values())
    augmentations: dict[str, int] = {}
    rows = []
    for _ in range(n_rows):
        family = families[int(rng.choice(len(families), p=weights))]
        for attempt in range(_PLANS * 2 * _BACKGROUND_TRIES):
            # Every 2 * _BACKGROUND_TRIES backgrounds a new plan of the family (an air-heavy tile cannot hold three
            # large lesions); half-way through each, the other polarity (ultrasound rarely shows a dark lesion).
            if attempt % (2 * _BACKGROUND_TRIES) == 0:
                lesions, planned = findings.plan(family, rng)
            polarity = planned if attempt % (2 * _BACKGROUND_TRIES) < _BACKGROUND_TRIES else findings.other_polarity(planned)
            base = bases[int(rng.integers(len(bases)))]
            k = augmentations[base.source] = augmentations.get(base.source, -1) + 1
            drawn = findings.draw(augment(base, rng, size), lesions, polarity, rng)
            if drawn is not None:
                image = Image.fromarray((drawn[0] * 255).round().astype(np.uint8))
                if train_hashes is None or not _near_any(phash(image), train_hashes):
                    break
        else:
            raise RuntimeError(f"{name} ({split}): no background of this source shows {family} lesions in "
                               f"{_PLANS} plans x {2 * _BACKGROUND_TRIES} backgrounds; it cannot host the family")
        q = findings.ask(family, drawn[1], rng)
        rows.append(StarterExample(group, split, image, q.question, q.answer, q.answer_type, q.choices,
                                   base.modality, base.organ, q.reasoning, f"{base.source}#aug{k}"))
    return rows


def _near_any(value: int, hashes: np.ndarray) -> bool:
    """Whether a 64-bit hash is within PHASH_MAX_DISTANCE bits of any of `hashes`."""
    if not hashes.size:
        return False
    differing = np.unpackbits((hashes ^ np.uint64(value)).view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
    return bool((differing <= PHASH_MAX_DISTANCE).any())
