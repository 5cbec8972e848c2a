"""Images for prepared data: decoded once, RGB, bounded, written as PNG named by its content.

A DICOM is rendered through its own rescale and window tags and only its pixels leave the file; a perceptual hash
per image lets the leakage checks (rarl_core/leakage.py) find re-encoded copies; PNG bytes depend on the pixels
only, so prepared data is byte-identical on every machine.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import struct
import sys
import threading
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from rarl_core.readers import ImageRef


class Rejected(Exception):
    """An image that cannot be used; `reason` is a REASONS key."""

    def __init__(self, reason: str, detail: str):
        super().__init__(reason, detail)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Normalised:
    name: str  # <first 32 hex of sha256(PNG bytes)>.png: equal pixels, equal name
    phash: int  # 64-bit perceptual hash, for re-encoded copies


def load_image(ref: ImageRef) -> Image.Image:
    """Decode an image reference to RGB; raises Rejected with the reason."""
    if isinstance(ref, Image.Image):
        return ref.convert("RGB")
    if isinstance(ref, Path):
        if not ref.is_file():
            raise Rejected("missing_image", f"{ref} not found")
        data = ref.read_bytes()
        dicom = ref.suffix.lower() == ".dcm" or data[128:132] == b"DICM"
    else:
        data, dicom = ref, ref[128:132] == b"DICM"
    if dicom:
        return dicom_image(data)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # a truncated file fails here, not later in training
            return _to_rgb(ImageOps.exif_transpose(image))
    except Exception as err:
        raise Rejected("unreadable_image", f"{type(err).__name__}: {err}") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """16-bit and float greyscale are stretched to their own range (convert() would clip them); alpha goes on black."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        return Image.fromarray(_to_uint8(_stretch(np.asarray(image, dtype=np.float64)))).convert("RGB")
    if "A" in image.getbands() or "transparency" in image.info:
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def dicom_image(data: bytes) -> Image.Image:
    """A DICOM's first frame as RGB: stored values -> RescaleSlope/Intercept (e.g. HU) -> WindowCenter/Width.

    De-identification by construction: only the pixel data and the tags that say how to render it are read; no
    identifier of the PS3.15 basic profile (PatientName, PatientID, PatientBirthDate, ...) is copied anywhere. pydicom's
    warnings, which quote element values, are silenced while reading, and errors name only the exception type, since
    a decoder's message could quote the header. A file that declares text burned into its pixels (BurnedInAnnotation
    YES) is refused: its pixels would carry the identifiers.
    """
    import pydicom

    pydicom_log = logging.getLogger("pydicom")
    level = pydicom_log.level
    try:
        pydicom_log.setLevel(logging.CRITICAL + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
                raise Rejected("burned_in_annotation", "DICOM declares BurnedInAnnotation YES")
            return _render(ds)
    except Rejected:
        raise
    except Exception as err:
        raise Rejected("unreadable_image", f"DICOM pixel data could not be decoded ({type(err).__name__})") from None
    finally:
        pydicom_log.setLevel(level)


def _render(ds) -> Image.Image:
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    pixels = ds.pixel_array  # colour (YBR) arrives as RGB
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(pixels, ds).astype(np.float64)
        return Image.fromarray(_to_uint8(rgb / (2 ** int(ds.RedPaletteColorLookupTableDescriptor[2]) - 1)))
    if pixels.ndim == 3:
        return Image.fromarray(_to_uint8(pixels / (2 ** int(ds.get("BitsStored", 8)) - 1))).convert("RGB")
    values = apply_modality_lut(pixels, ds).astype(np.float64)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        grey = window(values, _first(ds.WindowCenter), _first(ds.WindowWidth))
    else:
        grey = _stretch(values)
    if photometric == "MONOCHROME1":  # low values are bright
        grey = 1.0 - grey
    return Image.fromarray(_to_uint8(grey)).convert("RGB")


def window(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """The DICOM linear VOI window (PS3.3 C.11.2.1.2.1), mapped to [0, 1]. Width 1 is a step; 2 keeps it finite."""
    width = max(float(width), 2.0)
    return np.clip((values - (centre - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _first(value) -> float:
    """First value of a possibly multi-valued element (several windows may be offered; the first is the default)."""
    from pydicom.multival import MultiValue

    return float(value[0]) if isinstance(value, (MultiValue, list, tuple)) else float(value)


def _stretch(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    return (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    return (np.clip(unit, 0.0, 1.0) * 255).round().astype(np.uint8)


def bound(image: Image.Image, size: int) -> Image.Image:
    """Shrink so that the longest side is at most `size` (aspect kept); never enlarge."""
    if max(image.size) <= size:
        return image
    image = image.copy()
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return image


_DCT = np.cos(np.pi * (2 * np.arange(32)[None, :] + 1) * np.arange(32)[:, None] / 64)


def phash(image: Image.Image) -> int:
    """64-bit perceptual hash: signs of the 8x8 lowest DCT frequencies of a 32x32 grey thumbnail vs their median.

    Measured on the starter set: JPEG re-encodes at quality >= 70 stay within PHASH_MAX_DISTANCE of the original,
    while no two held-apart starter images come closer than 6 bits (a 9x8 dHash confused them at 4).
    """
    grey = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.BOX), dtype=np.float64)
    low = (_DCT @ grey @ _DCT.T)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_bytes(image: Image.Image) -> bytes:
    """The image as an 8-bit RGB PNG whose bytes depend on its pixels only, on every machine.

    Hand-written (30 lines) because no encoder at hand guarantees that: Pillow's wheels bundle zlib-ng, which picks
    its compressor for the CPU at run time, so the same pixels gave different PNG bytes on two machines (and a
    teammate's dvc.lock never matched). This uses CPython's zlib at a fixed level (6, zlib's default: 3x faster than
    9 on the starter images for files 3% larger), one "Up" filter for every row.
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    height, width, _ = pixels.shape
    up = np.concatenate([pixels[:1], pixels[1:] - pixels[:-1]]).reshape(height, width * 3)  # uint8 wraps mod 256
    raw = np.concatenate([np.full((height, 1), 2, np.uint8), up], axis=1).tobytes()  # filter type 2 per row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB, deflate, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(raw, 6))
            + _png_chunk(b"IEND", b""))


def save_image(image: Image.Image, images_dir: Path) -> str:
    """Write `image` as PNG named by the hash of its bytes; identical images share one file."""
    data = png_bytes(image)
    name = hashlib.sha256(data).hexdigest()[:32] + ".png"
    target = images_dir / name
    if not target.exists():  # two workers may race on one picture: write aside, rename (same bytes either way)
        tmp = images_dir / f".{name}.{os.getpid()}"
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return name


def normalise(job: tuple[ImageRef | None, int, Path]) -> Normalised | Rejected:
    """One image: decode, bound, write. Runs in a worker process when data.num_workers > 1."""
    ref, size, images_dir = job
    try:
        if ref is None:
            raise Rejected("missing_image", "the row names no image")
        image = bound(load_image(ref), size)
        return Normalised(save_image(image, images_dir), phash(image))
    except Rejected as rejected:
        return rejected


def normalise_all(
    refs: list[ImageRef | None], size: int, images_dir: Path, workers: int
) -> list[Normalised | Rejected]:
    """Normalise each distinct reference once (rows often share a picture), in order, on `workers` processes."""
    keys = [_ref_key(ref) for ref in refs]
    unique = dict(zip(keys, refs))
    jobs = [(ref, size, images_dir) for ref in unique.values()]
    if workers == 1 or len(jobs) < 2:
        results = [normalise(job) for job in jobs]
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context(_start_method())) as pool:
            results = list(pool.map(normalise, jobs, chunksize=max(1, len(jobs) // (8 * workers))))
    by_key = dict(zip(unique, results))
    return [by_key[key] for key in keys]


def _start_method() -> str | None:
    """fork starts workers at once (forkserver and spawn re-import the libraries, 1-2 s each) and is safe while this
    process runs no other thread, as in the stage; otherwise the platform's default, which does not inherit locks."""
    return "fork" if sys.platform == "linux" and threading.active_count() == 1 else None


def _ref_key(ref: ImageRef | None):
    if isinstance(ref, bytes):
        return hashlib.sha256(ref).digest()
    if isinstance(ref, Path):
        return str(ref)
    return id(ref)  # a decoded picture (starter): its rows share the object
