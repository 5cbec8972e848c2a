"""The real medical images the starter set draws its backgrounds from, as they ship inside PyPI packages.

pydicom, nibabel and scikit-image carry genuine CT, MRI, ultrasound, fundus and histology images as test data. This
module turns each bundled file into base 2D images (the unit that is held out whole: a tile of a slice, a cine
frame, a volume slice) and draws augmentations of them. What is asked about them lives in rarl_core/starter.py and
rarl_core/findings.py.

Trust: the modality comes from the DICOM Modality tag (or from which package image it is); a volume slice is cut
along the axis its orientation names (nibabel's aff2axcodes) and turned to a conventional view with square pixels;
CT stays in Hounsfield units until a window is applied per augmentation.

Privacy: from a DICOM file only the pixel data, Modality, rescale/window/palette tags and geometry are read.
Burned-in text (patient-like labels, dates) in the ultrasound files is cropped away by the callers' crop boxes.
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
from PIL import Image, ImageFilter
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut, apply_modality_lut, convert_color_space, pixel_array

CT, MRI, US, FUNDUS, HISTO = "CT", "MRI", "ultrasound", "fundus photograph", "histology"
DICOM_MODALITY = {"CT": CT, "MR": MRI, "US": US}  # DICOM Modality tag -> the modality column

# CT windows (centre, width) in HU: brain, subdural, soft tissue, bone. Jittered per augmentation.
_CT_WINDOWS = ((40, 80), (75, 215), (50, 400), (500, 2500))
_BLUR_P = 0.3  # share of augmentations blurred slightly


@dataclass
class Base:
    """A base 2D image: the unit that is held out whole. Augmentations of it become the starter images."""

    source: str  # e.g. "pydicom:CT_small.dcm#tile(0,1)"
    modality: str
    organ: str
    pixels: np.ndarray  # HxW float (HU when hu=True, else in [0, 1]) or HxWx3 uint8 RGB
    hu: bool = False  # CT in Hounsfield units: a random window is applied per augmentation
    neighbours: bool = False  # consecutive bases are near-duplicates (cine frames): keep a gap around test
    split: str = "test"  # group A: set by _assign_splits


class Skip(Exception):
    """A source that cannot be used here (not bundled, or no decoder plugin); reported, never fatal."""


# ---------------------------------------------------------------------------------------------------------------
# DICOM sources


def _read_dicom(name: str) -> tuple[pydicom.Dataset, np.ndarray]:
    """Read a bundled pydicom test file (never downloading) and decode its raw pixel data."""
    path = get_testdata_file(name, download=False)
    if path is None:
        raise Skip("not bundled with this pydicom (download disabled)")
    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            raw = pixel_array(ds, as_rgb=False)
        except Exception as err:  # missing decoder plugin, or undecodable pixel data
            raise Skip(f"cannot decode {ds.file_meta.TransferSyntaxUID.name}: {type(err).__name__}: {err}") from err
    return ds, raw


def _dicom_modality(ds: pydicom.Dataset, name: str) -> str:
    """Map the DICOM Modality tag to an answer; an unexpected modality is skipped rather than guessed."""
    tag = str(ds.get("Modality", ""))
    if tag not in DICOM_MODALITY:
        raise Skip(f"Modality {tag!r} is not one the starter set asks about")
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


def dicom_tiles(name, box, grid, organ=""):
    """Single-slice file -> a grid of disjoint tiles, each a base image (so test tiles share no pixels)."""
    ds, raw = _read_dicom(name)
    modality = _dicom_modality(ds, name)
    pixels, hu = _dicom_frame_pixels(ds, raw)
    pixels = _crop_box(pixels, box)
    return [
        Base(f"pydicom:{name}#tile({r},{c})", modality, organ, tile, hu=hu)
        for (r, c), tile in _tiles(pixels, grid)
    ]


def dicom_frames(name, box):
    """Multi-frame (cine) file -> one base image per frame."""
    ds, raw = _read_dicom(name)
    modality = _dicom_modality(ds, name)
    frames = raw if int(ds.get("NumberOfFrames", 1)) > 1 else raw[None]
    bases = []
    for i, frame in enumerate(frames):
        pixels, hu = _dicom_frame_pixels(ds, frame)
        source = f"pydicom:{name}#frame[{i}]"
        bases.append(Base(source, modality, "", _crop_box(pixels, box), hu=hu, neighbours=True))
    return bases


def dicom_whole(name, box):
    """Group-B file -> one base image (the whole frame, cropped to the scan area). Organ from BodyPartExamined."""
    ds, raw = _read_dicom(name)
    modality = _dicom_modality(ds, name)
    pixels, hu = _dicom_frame_pixels(ds, raw)
    organ = str(ds.get("BodyPartExamined", "")).strip().lower()
    pixels = _crop_box(pixels, box)  # square crops of a strip (the palette fan) show its speckle, not black
    return [Base(f"pydicom:{name}#whole", modality, organ, pixels, hu=hu)]


# ---------------------------------------------------------------------------------------------------------------
# NIfTI volumes


def volume_slices(name: str, plane: str, n_slices: int) -> list[Base]:
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
        bases.append(Base(source, MRI, organ, pixels))
    return bases


@functools.lru_cache(maxsize=4)
def _load_volume(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(volume stretched to [0, 1], affine) of a bundled nibabel test volume; cached, as three planes use it."""
    path = os.path.join(os.path.dirname(nib.__file__), "tests", "data", name)
    if not os.path.exists(path):
        raise Skip("not bundled with this nibabel")
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
        raise Skip(f"not available offline: {type(err).__name__}: {err}") from err


def skimage_tiles(name: str, grid, min_fundus: float = 0.0) -> list[Base]:
    """A large picture -> disjoint tiles as base images; for the fundus, only tiles inside the round retina."""
    modality, organ = {"retina": (FUNDUS, "eye"), "immunohistochemistry": (HISTO, "colon")}[name]
    image = _skimage_image(name)
    bases = []
    for (r, c), tile in _tiles(image, grid):
        if (tile.mean(axis=-1) > 20).mean() >= min_fundus:
            bases.append(Base(f"skimage:{name}#tile({r},{c})", modality, organ, tile))
    return bases


def skimage_whole(name: str) -> list[Base]:
    """A small group-B picture (the grey microaneurysms retina crop) used whole."""
    image = _skimage_image(name).astype(np.float32) / 255.0
    return [Base(f"skimage:{name}#whole", FUNDUS, "eye", image)]


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


def seeded_rng(seed: int, name: str) -> np.random.Generator:
    """A generator that depends only on the seed and one source name (stable across Python runs)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


# ---------------------------------------------------------------------------------------------------------------
# Augmentation


def augment(base: Base, rng: np.random.Generator, size: int) -> np.ndarray:
    """Random rotated square crop, flip, window (CT), gamma, jitter and blur -> size x size x 3 floats in [0, 1]."""
    work = 2 * size  # sample at twice the size, then box-filter down: cheap anti-aliasing
    crop = _rotated_crop(base.pixels, rng, work)
    if base.hu:
        centre, width = _CT_WINDOWS[rng.integers(len(_CT_WINDOWS))]
        crop = _window(crop, centre + rng.normal(0, 0.1 * width), width * rng.uniform(0.8, 1.25))
    elif base.pixels.dtype == np.uint8:
        crop = crop / 255.0
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = _jitter(crop ** rng.uniform(0.7, 1.4), rng)
    rgb = np.repeat(crop[..., None], 3, axis=2) if crop.ndim == 2 else crop
    image = Image.fromarray((rgb * 255).round().astype(np.uint8)).resize((size, size), Image.Resampling.BOX)
    if rng.random() < _BLUR_P:  # scanners and upscaled strips differ in sharpness: do not let sharpness name a source
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.5))))
    return np.asarray(image, dtype=np.float32) / 255.0


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
