"""The bundled "starter" medical VQA set, built from real medical images that ship inside PyPI packages.

Why this exists: the pipeline must run end to end offline, on a laptop, without the user downloading VQA-RAD or
SLAKE first. pydicom, nibabel and scikit-image carry a handful of genuine CT, MRI, ultrasound, fundus and histology
images as test data; with augmentation they give a small set on which a tiny Qwen2-VL learns in minutes on CPU.

Why the answers can be trusted: every answer is true by construction. The modality comes from the DICOM Modality
tag (or from which package image it is), the plane of a volume slice from the axis it was cut along and the
volume's orientation (nibabel's ``aff2axcodes``), the organ only where it is known for that file. The ``reasoning``
names cues that are checked against the pixels or the metadata, and ends with ", so <conclusion>".

Why two groups: group A (train + in-domain test) and group B (files never seen in training, test only), as in
docs/starter-data.md. Group A's test set holds out whole base 2D images (a tile of a slice, a cine frame, a volume
slice) with all their augmentations, so it is not a recall test; group B is the real generalisation test.

Privacy: from a DICOM file only the pixel data, Modality, rescale/window/palette tags and geometry are read. Burned-in
text (patient-like labels, dates) in the ultrasound files is cropped away before use.

Determinism: every random draw comes from a generator seeded by (seed, crc32 of a source name), so the same seed
gives byte-identical images and identical rows in a stable order, and adding a source does not shift the others.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
import zlib
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import pydicom
import skimage.data
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut, apply_modality_lut, convert_color_space, pixel_array

# Modality names as answers. X-ray never occurs here; it is only a distractor.
CT, MRI, US, FUNDUS, HISTO, XRAY = "CT", "MRI", "ultrasound", "fundus photograph", "histology", "X-ray"
MODALITY_OPTIONS = (CT, MRI, US, XRAY, FUNDUS, HISTO)
PLANES = ("axial", "sagittal", "coronal")
DICOM_MODALITY = {"CT": CT, "MR": MRI, "US": US}  # DICOM Modality tag -> answer

# "Is this <article + name>?" wording per modality.
_MODALITY_NOUN = {
    CT: "a CT image",
    MRI: "an MRI image",
    US: "an ultrasound image",
    XRAY: "an X-ray image",
    FUNDUS: "a fundus photograph",
    HISTO: "a histology image",
}

Q_OPEN_MODALITY = "What imaging modality is this?"
Q_MC_MODALITY = "Which of the following imaging modalities is this?"
Q_OPEN_PLANE = "Which plane is this slice: axial, sagittal or coronal?"
Q_OPEN_ORGAN = "Which organ or body region is shown?"

# Short cues that are true for every image of the kind (checked by eye and, for CT bone, on the pixels).
_PLANE_CUE = {
    "axial": "horizontal cross-section seen from above",
    "sagittal": "side view dividing left from right",
    "coronal": "front view dividing front from back",
}

# CT windows (centre, width) in HU: brain, subdural, soft tissue, bone. Jittered per augmentation.
_CT_WINDOWS = ((40, 80), (75, 215), (50, 400), (500, 2500))
_BONE_HU = 300
_TEST_FRACTION = 0.2  # share of each group-A source's base images held out for test
_ORGAN_QUESTION_P = 0.3  # "a few" organ questions: asked for this share of the eligible images


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
    modality: str
    organ: str
    reasoning: str
    source: str  # "<file>#<base image>#aug<k>"; the part before "#aug" names the base image


@dataclass
class _Base:
    """A base 2D image: the unit that is held out whole. Augmentations of it become the starter images."""

    source: str  # e.g. "pydicom:CT_small.dcm#tile(0,1)"
    modality: str
    organ: str
    pixels: np.ndarray  # HxW float (HU when hu=True, else in [0, 1]) or HxWx3 uint8 RGB
    cue: str  # visual cue for the modality reasoning
    n_aug: int
    hu: bool = False  # CT in Hounsfield units: a random window is applied per augmentation
    plane: str = ""  # axial/sagittal/coronal for volume slices
    neighbours: bool = False  # consecutive bases are near-duplicates (cine frames): keep a gap around test
    split: str = "test"  # group A: set by _assign_splits


class _Skip(Exception):
    """A source that cannot be used here (not bundled, or no decoder plugin); reported, never fatal."""


# ---------------------------------------------------------------------------------------------------------------
# Public entry point


def build_starter(image_size: int = 112, seed: int = 0) -> tuple[list[StarterExample], list[str]]:
    """Return (examples, skipped) where skipped lists "<source>: <reason>" for sources that could not be decoded.

    Group A sources are split into train/test by whole base images; group B sources are test only.
    """
    skipped: list[str] = []
    group_a = _collect(_group_a_sources(), skipped)
    group_b = _collect(_group_b_sources(), skipped)
    for name, bases in group_a.items():
        _assign_splits(name, bases, seed)
    examples = []
    for group, families in (("A", group_a), ("B", group_b)):
        for base in (b for bases in families.values() for b in bases):
            examples.extend(_examples_for_base(base, group, image_size, seed))
    return examples, skipped


def _group_a_sources():
    """(name, loader) pairs for group A; each loader returns the base images of one source family."""
    return (
        ("pydicom:CT_small.dcm", lambda: _dicom_tiles("CT_small.dcm", None, (2, 2), n_aug=10)),
        ("pydicom:693_J2KI.dcm", lambda: _dicom_tiles("693_J2KI.dcm", None, (2, 2), n_aug=10, organ="head")),
        ("pydicom:MR_small.dcm", lambda: _dicom_tiles("MR_small.dcm", None, (2, 2), n_aug=4)),
        (
            "pydicom:examples_overlay.dcm",
            lambda: _dicom_tiles("examples_overlay.dcm", None, (2, 3), n_aug=3, organ="abdomen"),
        ),
        ("nibabel:example4d.nii.gz#axial", lambda: _volume_slices("example4d.nii.gz", "axial", 8, n_aug=2)),
        ("nibabel:example4d.nii.gz#sagittal", lambda: _volume_slices("example4d.nii.gz", "sagittal", 8, n_aug=2)),
        ("nibabel:example4d.nii.gz#coronal", lambda: _volume_slices("example4d.nii.gz", "coronal", 8, n_aug=2)),
        # Crop boxes (x0, y0, x1, y1) keep the scan area and drop burned-in text, labels and colour bars.
        ("pydicom:examples_ybr_color.dcm", lambda: _dicom_frames("examples_ybr_color.dcm", (55, 15, 285, 205), 3)),
        ("pydicom:examples_jpeg2k.dcm", lambda: _dicom_tiles("examples_jpeg2k.dcm", (48, 110, 592, 335), (1, 4), 8)),
        ("skimage:retina", lambda: _skimage_tiles("retina", (5, 5), n_aug=7, min_fundus=0.9)),
        ("skimage:immunohistochemistry", lambda: _skimage_tiles("immunohistochemistry", (4, 4), n_aug=5)),
    )


def _group_b_sources():
    """(name, loader) pairs for group B: files of the same modalities that group A never uses."""
    return (
        ("pydicom:J2K_pixelrep_mismatch.dcm", lambda: _dicom_whole("J2K_pixelrep_mismatch.dcm", None, n_aug=22)),
        ("nibabel:anatomical.nii#axial", lambda: _volume_slices("anatomical.nii", "axial", 8, n_aug=1)),
        ("nibabel:anatomical.nii#sagittal", lambda: _volume_slices("anatomical.nii", "sagittal", 8, n_aug=1)),
        ("nibabel:anatomical.nii#coronal", lambda: _volume_slices("anatomical.nii", "coronal", 8, n_aug=1)),
        ("pydicom:examples_palette.dcm", lambda: _dicom_whole("examples_palette.dcm", (345, 66, 600, 152), n_aug=25)),
        ("skimage:microaneurysms", lambda: _skimage_whole("microaneurysms", n_aug=22)),
    )


def _collect(sources, skipped: list[str]) -> dict[str, list[_Base]]:
    """Run each loader; a source that cannot be decoded is recorded in `skipped` instead of failing the build."""
    families = {}
    for name, load in sources:
        try:
            families[name] = load()
        except _Skip as why:
            skipped.append(f"{name}: {why}")
    return families


def _assign_splits(name: str, bases: list[_Base], seed: int) -> None:
    """Hold out one contiguous run of base images (about 20%) for test; the rest train.

    Contiguous, because neighbouring cine frames and volume slices look alike: a run leaks only at its two ends.
    Frame and slice families also drop the base just outside each end of the run (a guard gap).
    """
    n = len(bases)
    if n == 0:
        return
    n_test = max(1, round(n * _TEST_FRACTION))
    start = int(_rng(seed, name + "#split").integers(0, n - n_test + 1))
    for i, base in enumerate(bases):
        base.split = "test" if start <= i < start + n_test else "train"
    guards = {start - 1, start + n_test} if any(b.neighbours for b in bases) else set()
    bases[:] = [b for i, b in enumerate(bases) if i not in guards]


# ---------------------------------------------------------------------------------------------------------------
# DICOM sources


def _read_dicom(name: str) -> tuple[pydicom.Dataset, np.ndarray]:
    """Read a bundled pydicom test file (never downloading) and decode its raw pixel data."""
    path = get_testdata_file(name, download=False)
    if path is None:
        raise _Skip("not bundled with this pydicom (download disabled)")
    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            raw = pixel_array(ds, as_rgb=False)
        except Exception as err:  # missing decoder plugin, or undecodable pixel data
            raise _Skip(f"cannot decode {ds.file_meta.TransferSyntaxUID.name}: {type(err).__name__}: {err}") from err
    return ds, raw


def _dicom_modality(ds: pydicom.Dataset, name: str) -> str:
    """Map the DICOM Modality tag to an answer; an unexpected modality is skipped rather than guessed."""
    tag = str(ds.get("Modality", ""))
    if tag not in DICOM_MODALITY:
        raise _Skip(f"Modality {tag!r} is not one the starter set asks about")
    return DICOM_MODALITY[tag]


def _dicom_frame_pixels(ds: pydicom.Dataset, frame: np.ndarray) -> tuple[np.ndarray, bool]:
    """One decoded frame -> (pixels, is_hu). CT stays in HU; MR gets its own window; colour becomes RGB uint8."""
    photometric = str(ds.PhotometricInterpretation)
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(frame, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return (rgb.astype(np.float64) / (2**bits - 1) * 255).round().astype(np.uint8), False
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        return convert_color_space(frame, photometric, "RGB"), False
    if photometric in ("RGB", "YBR_RCT", "YBR_ICT"):  # RCT/ICT are undone by the JPEG 2000 decoder itself
        return frame.astype(np.uint8), False
    values = apply_modality_lut(frame, ds).astype(np.float32)  # RescaleSlope/Intercept -> HU for CT
    if photometric == "MONOCHROME1":
        values = values.max() - values
    if ds.Modality == "CT":
        return values, True
    return _own_window(values, ds), False


def _own_window(values: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Non-CT greyscale: the file's first WindowCenter/Width if it has one, else a 1-99.5 percentile stretch."""
    if "WindowCenter" in ds and "WindowWidth" in ds:
        centre, width = (_first(ds.WindowCenter), _first(ds.WindowWidth))
        return _window(values, centre, width)
    return _percentile_stretch(values)


def _first(value) -> float:
    """First value of a possibly multi-valued DICOM element."""
    return float(value[0]) if isinstance(value, pydicom.multival.MultiValue) else float(value)


def _dicom_tiles(name, box, grid, n_aug, organ=""):
    """Single-slice file -> a grid of disjoint tiles, each a base image (so test tiles share no pixels)."""
    ds, raw = _read_dicom(name)
    modality = _dicom_modality(ds, name)
    pixels, hu = _dicom_frame_pixels(ds, raw)
    pixels = _crop_box(pixels, box)
    return [
        _Base(f"pydicom:{name}#tile({r},{c})", modality, organ, tile, _cue(modality), n_aug, hu=hu)
        for (r, c), tile in _tiles(pixels, grid)
    ]


def _dicom_frames(name, box, n_aug):
    """Multi-frame (cine) file -> one base image per frame."""
    ds, raw = _read_dicom(name)
    modality = _dicom_modality(ds, name)
    frames = raw if int(ds.get("NumberOfFrames", 1)) > 1 else raw[None]
    bases = []
    for i, frame in enumerate(frames):
        pixels, hu = _dicom_frame_pixels(ds, frame)
        source = f"pydicom:{name}#frame[{i}]"
        bases.append(_Base(source, modality, "", _crop_box(pixels, box), _cue(modality), n_aug, hu=hu, neighbours=True))
    return bases


def _dicom_whole(name, box, n_aug):
    """Group-B file -> one base image (the whole frame, cropped to the scan area). Organ from BodyPartExamined."""
    ds, raw = _read_dicom(name)
    modality = _dicom_modality(ds, name)
    pixels, hu = _dicom_frame_pixels(ds, raw)
    organ = str(ds.get("BodyPartExamined", "")).strip().lower()
    pixels = _crop_box(pixels, box)  # square crops of a strip (the palette fan) show its speckle, not black
    return [_Base(f"pydicom:{name}#whole", modality, organ, pixels, _cue(modality), n_aug, hu=hu)]


# ---------------------------------------------------------------------------------------------------------------
# NIfTI volumes


def _volume_slices(name: str, plane: str, n_slices: int, n_aug: int) -> list[_Base]:
    """Cut `n_slices` evenly spaced slices of one plane from a bundled nibabel volume.

    The plane comes from the orientation: the axis whose aff2axcodes letter is L/R is cut for sagittal slices, A/P
    for coronal, S/I for axial. Slices are turned to a conventional view and resampled to square pixels.
    """
    volume, affine = _load_volume(name)
    codes = nib.aff2axcodes(affine)
    axis = [_plane_of(code) for code in codes].index(plane)
    zooms = nib.affines.voxel_sizes(affine)
    organ = "brain"  # both bundled volumes are brain scans (T1 anatomical, EPI)
    bases = []
    for index in _pick_slices(volume, axis, n_slices):
        pixels = _slice_view(volume, axis, index, codes, zooms)
        source = f"nibabel:{name}#{plane}[{index}]"
        bases.append(_Base(source, MRI, organ, pixels, _cue(MRI), n_aug, plane=plane))
    return bases


@functools.lru_cache(maxsize=4)
def _load_volume(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(volume stretched to [0, 1], affine) of a bundled nibabel test volume; cached, as three planes use it."""
    path = os.path.join(os.path.dirname(nib.__file__), "tests", "data", name)
    if not os.path.exists(path):
        raise _Skip("not bundled with this nibabel")
    img = nib.load(path)
    volume = np.asanyarray(img.dataobj).astype(np.float32)
    if volume.ndim == 4:
        volume = volume[..., 0]  # first time point; later ones show the same anatomy
    return _percentile_stretch(volume), img.affine


def _plane_of(axcode: str) -> str:
    """Cutting across the L-R axis gives a sagittal slice, across A-P coronal, across S-I axial."""
    return {"L": "sagittal", "R": "sagittal", "A": "coronal", "P": "coronal", "S": "axial", "I": "axial"}[axcode]


def _pick_slices(volume: np.ndarray, axis: int, n: int) -> list[int]:
    """Evenly spaced slice indices among those at least half as full of tissue as the fullest slice."""
    tissue = np.moveaxis(volume > 0.15, axis, 0).reshape(volume.shape[axis], -1).mean(axis=1)
    candidates = np.flatnonzero(tissue >= 0.5 * tissue.max())
    picks = np.linspace(0, len(candidates) - 1, num=min(n, len(candidates))).round().astype(int)
    return [int(candidates[i]) for i in picks]


def _slice_view(volume, axis, index, codes, zooms) -> np.ndarray:
    """One slice, flipped so the remaining axes point to R/A/S, superior (or anterior) up, square pixels, padded."""
    u_axis, v_axis = [a for a in range(3) if a != axis]
    plane = np.take(volume, index, axis=axis)  # rows follow u_axis, columns v_axis
    if codes[u_axis] in "LPI":
        plane = plane[::-1, :]
    if codes[v_axis] in "LPI":
        plane = plane[:, ::-1]
    view = np.ascontiguousarray(plane.T[::-1])  # v (towards S or A) points up, u (towards R or A) to the right
    unit = min(zooms[u_axis], zooms[v_axis])
    width = round(view.shape[1] * zooms[u_axis] / unit)
    height = round(view.shape[0] * zooms[v_axis] / unit)
    square = Image.fromarray(view.astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR)
    return _pad_square(np.asarray(square))


# ---------------------------------------------------------------------------------------------------------------
# scikit-image pictures


def _skimage_image(name: str) -> np.ndarray:
    """Load a scikit-image sample picture, skipping it if it is not installed (it would need a download)."""
    try:
        return getattr(skimage.data, name)()
    except Exception as err:  # pooch/network errors when the file is not bundled
        raise _Skip(f"not available offline: {type(err).__name__}: {err}") from err


def _skimage_tiles(name: str, grid, n_aug: int, min_fundus: float = 0.0) -> list[_Base]:
    """A large picture -> disjoint tiles as base images; for the fundus, only tiles inside the round retina."""
    modality, organ = {"retina": (FUNDUS, "eye"), "immunohistochemistry": (HISTO, "colon")}[name]
    image = _skimage_image(name)
    bases = []
    for (r, c), tile in _tiles(image, grid):
        if (tile.mean(axis=-1) > 20).mean() >= min_fundus:
            bases.append(_Base(f"skimage:{name}#tile({r},{c})", modality, organ, tile, _cue(modality, name), n_aug))
    return bases


def _skimage_whole(name: str, n_aug: int) -> list[_Base]:
    """A small group-B picture (the grey microaneurysms retina crop) used whole."""
    image = _skimage_image(name).astype(np.float32) / 255.0
    return [_Base(f"skimage:{name}#whole", FUNDUS, "eye", image, _cue(FUNDUS, name), n_aug)]


# ---------------------------------------------------------------------------------------------------------------
# Pixel helpers


def _window(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """DICOM linear VOI window (PS3.3 C.11.2.1.2) mapped to [0, 1]."""
    width = max(float(width), 2.0)
    return np.clip((values - (centre - 0.5)) / (width - 1) + 0.5, 0.0, 1.0).astype(np.float32)


def _percentile_stretch(values: np.ndarray) -> np.ndarray:
    """Map the 1st-99.5th percentile range to [0, 1]: a robust window when the file defines none."""
    lo, hi = np.percentile(values, [1, 99.5])
    return np.clip((values - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def _crop_box(pixels: np.ndarray, box) -> np.ndarray:
    """Crop (x0, y0, x1, y1); None keeps the whole image."""
    if box is None:
        return pixels
    x0, y0, x1, y1 = box
    return pixels[y0:y1, x0:x1]


def _pad_square(pixels: np.ndarray) -> np.ndarray:
    """Centre on a black square so that a thin slab's slice keeps its true shape instead of being stretched."""
    h, w = pixels.shape[:2]
    side = max(h, w)
    out = np.zeros((side, side) + pixels.shape[2:], dtype=pixels.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = pixels
    return out


def _tiles(pixels: np.ndarray, grid):
    """Split into a rows x cols grid of disjoint tiles: [((r, c), tile)] in row-major order."""
    rows, cols = grid
    h, w = pixels.shape[:2]
    for r in range(rows):
        for c in range(cols):
            tile = pixels[r * h // rows : (r + 1) * h // rows, c * w // cols : (c + 1) * w // cols]
            yield (r, c), np.ascontiguousarray(tile)


def _cue(modality: str, name: str = "") -> str:
    """A visual cue that holds for every image of this source, for the reasoning text."""
    if modality == FUNDUS:
        return "grey retinal crop with dark vessels" if name == "microaneurysms" else "orange-red retinal background"
    return {
        CT: "grayscale cross-section with bright bone",  # replaced per image when no bone is in view
        MRI: "grayscale slice with soft-tissue contrast",
        US: "grainy speckled echo texture",
        HISTO: "brown and blue stained cells",
    }[modality]


def _rng(seed: int, name: str) -> np.random.Generator:
    """A generator that depends only on the seed and one source name (stable across Python runs)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


# ---------------------------------------------------------------------------------------------------------------
# Augmentation


def _augment(base: _Base, rng: np.random.Generator, size: int) -> tuple[Image.Image, str]:
    """Random rotated square crop, flip, window (CT), gamma and jitter -> (RGB size x size image, modality cue)."""
    work = 2 * size  # sample at twice the size, then box-filter down: cheap anti-aliasing
    crop = _rotated_crop(base.pixels, rng, work)
    cue = base.cue
    if base.hu:
        if (crop > _BONE_HU).mean() < 0.005:  # the bone cue must be true for this very crop
            cue = "grayscale cross-section of smooth soft-tissue densities"
        centre, width = _CT_WINDOWS[rng.integers(len(_CT_WINDOWS))]
        crop = _window(crop, centre + rng.normal(0, 0.1 * width), width * rng.uniform(0.8, 1.25))
    elif base.pixels.dtype == np.uint8:
        crop = crop / 255.0
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = _jitter(crop ** rng.uniform(0.8, 1.25), rng)
    rgb = np.repeat(crop[..., None], 3, axis=2) if crop.ndim == 2 else crop
    image = Image.fromarray((rgb * 255).round().astype(np.uint8))
    return image.resize((size, size), Image.Resampling.BOX), cue


def _rotated_crop(pixels: np.ndarray, rng: np.random.Generator, out: int) -> np.ndarray:
    """A square crop (70-100% of the largest that fits) rotated by up to 10 degrees, always inside the image.

    Returns float32 (out x out, or out x out x 3) in the input's units.
    """
    h, w = pixels.shape[:2]
    angle = math.radians(rng.uniform(-10, 10))
    cos, sin = math.cos(angle), math.sin(angle)
    reach = abs(cos) + abs(sin)  # the rotated square's bounding box is side * reach wide
    side = min(h, w) / reach * rng.uniform(0.7, 1.0)
    half = side * reach / 2
    cx, cy = rng.uniform(half, w - half), rng.uniform(half, h - half)
    k = side / out
    coeffs = (k * cos, -k * sin, cx - k * out / 2 * (cos - sin), k * sin, k * cos, cy - k * out / 2 * (sin + cos))
    channels = [pixels] if pixels.ndim == 2 else [pixels[..., i] for i in range(pixels.shape[2])]
    warped = [
        np.asarray(
            Image.fromarray(ch.astype(np.float32)).transform(
                (out, out), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR
            )
        )
        for ch in channels
    ]
    return warped[0] if pixels.ndim == 2 else np.stack(warped, axis=-1)


def _jitter(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness and contrast for all images; saturation too for colour ones, so grey images stay grey."""
    mean = pixels.mean()
    out = (pixels - mean) * rng.uniform(0.85, 1.15) + mean * rng.uniform(0.9, 1.1)
    if out.ndim == 3:
        grey = out.mean(axis=2, keepdims=True)
        out = grey + (out - grey) * rng.uniform(0.8, 1.2)
    return np.clip(out, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------------
# Questions


def _examples_for_base(base: _Base, group: str, size: int, seed: int) -> list[StarterExample]:
    """All rows of one base image: n_aug augmentations, each asked its modality (and plane, organ) questions."""
    rng = _rng(seed, base.source)
    n_closed = base.n_aug * (2 if base.plane else 1)
    # Half "yes" per base; with an odd count the extra answer is a coin flip (dropped at random), not always "yes".
    yes_flags = list(rng.permutation([True, False] * ((n_closed + 1) // 2))[:n_closed])
    rows = []
    for k in range(base.n_aug):
        image, cue = _augment(base, rng, size)
        qas = _modality_questions(base.modality, cue, rng, yes_flags.pop())
        if base.plane:
            qas += _plane_questions(base.plane, rng, yes_flags.pop())
        if base.organ and rng.random() < _ORGAN_QUESTION_P:
            qas.append((Q_OPEN_ORGAN, base.organ, "open", (), f"{_organ_cue(base)}, so {base.organ}"))
        split = base.split  # group B bases keep the default "test"
        source = f"{base.source}#aug{k}"
        for question, answer, kind, choices, reasoning in qas:
            rows.append(
                StarterExample(
                    group, split, image, question, answer, kind, choices, base.modality, base.organ, reasoning, source
                )
            )
    return rows


def _modality_questions(modality: str, cue: str, rng: np.random.Generator, yes: bool) -> list[tuple]:
    """Open, yes/no and 4-option multiple-choice modality questions; the reasoning concludes the true modality."""
    reasoning = f"{cue}, so {modality}"
    others = [m for m in MODALITY_OPTIONS if m != modality]
    asked = modality if yes else others[rng.integers(len(others))]
    distractors = [others[i] for i in rng.choice(len(others), size=3, replace=False)]
    choices = tuple(rng.permutation([modality, *distractors]).tolist())
    return [
        (Q_OPEN_MODALITY, modality, "open", (), reasoning),
        (f"Is this {_MODALITY_NOUN[asked]}?", "yes" if yes else "no", "closed", (), reasoning),
        (Q_MC_MODALITY, modality, "multiple_choice", choices, reasoning),
    ]


def _plane_questions(plane: str, rng: np.random.Generator, yes: bool) -> list[tuple]:
    """Open and yes/no plane questions for a volume slice; the reasoning concludes the true plane."""
    reasoning = f"{_PLANE_CUE[plane]}, so {plane}"
    others = [p for p in PLANES if p != plane]
    asked = plane if yes else others[rng.integers(len(others))]
    article = "an" if asked == "axial" else "a"
    return [
        (Q_OPEN_PLANE, plane, "open", (), reasoning),
        (f"Is this {article} {asked} slice?", "yes" if yes else "no", "closed", (), reasoning),
    ]


def _organ_cue(base: _Base) -> str:
    """Why the organ is known: a cue consistent with the file it came from."""
    return {
        "head": "cross-section through the skull",
        "brain": "slice through the brain",
        "abdomen": "slice through the upper abdomen",
        "eye": "retina photographed through the pupil",
        "colon": "colonic glands in stained tissue",
    }.get(base.organ, f"scan of the {base.organ}")
