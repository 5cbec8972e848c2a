"""Preparation: every dataset becomes one validated, normalised, content-addressed form (rarl_core/schema.py).

Output per dataset, written atomically (complete or absent):

    data.parquet       one row per question, all splits
    images/<sha>.png   RGB, longest side <= data.image_size, decoded once (a DICOM is windowed; only pixels leave it)
    quarantine.jsonl   every input row that is not in data.parquet, with its reason
    card.json          counts (rows in = rows out + quarantined), licence, source, hashes, leakage report
    README.md          the card for people

Why quarantine rather than drop: a set that silently loses rows trains on something other than what its card says.
Why leakage checks: the same picture in train and test measures recall, and in a training set and an "unseen" set
it fakes generalisation (a circulating VQA-RAD split leaks all its test images into train).
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
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from rarl_core.readers import ImageRef, RawRow, Source, read
from rarl_core.config import DataConfig, DatasetSpec
from rarl_core.files import atomic_dir, atomic_file, write_json, write_jsonl
from rarl_core.schema import ANSWER_TYPES, COLUMNS, SPLITS, DataError

__all__ = ["DataError", "prepare", "prepare_dataset"]

# Reasons a row is quarantined. other_language is a choice (data.datasets.<name>.language), not a defect.
REASONS = {
    "missing_image": "the image file does not exist, or the row names none",
    "unreadable_image": "the image cannot be decoded (truncated, not an image, undecodable DICOM pixel data)",
    "burned_in_annotation": "a DICOM that declares identifying text burned into its pixels",
    "empty_question": "the question is empty",
    "empty_answer": "the answer is empty",
    "unknown_answer_type": f"answer_type is not one of {', '.join(ANSWER_TYPES)}",
    "unknown_split": f"split is not one of {', '.join(SPLITS)}",
    "bad_choices": "multiple choice without two distinct options, or choices that do not parse",
    "answer_not_in_choices": "a multiple-choice answer that is none of the options",
    "duplicate": "same split, image content, question and answer as an earlier row",
    "other_language": "another language than the one kept (not a defect)",
}
NOT_DEFECTS = {"other_language"}
PHASH_MAX_DISTANCE = 4  # of 64 bits: JPEG re-encodes (q >= 70) land within it; distinct starter images stay >= 6


# ---------------------------------------------------------------------------------------------------------------
# Images: decoded once, RGB, bounded, PNG named by its content


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
    teammate's dvc.lock never matched). This uses CPython's zlib at a fixed level, one "Up" filter for every row.
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    height, width, _ = pixels.shape
    up = np.concatenate([pixels[:1], pixels[1:] - pixels[:-1]]).reshape(height, width * 3)  # uint8 wraps mod 256
    raw = np.concatenate([np.full((height, 1), 2, np.uint8), up], axis=1).tobytes()  # filter type 2 per row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB, deflate, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(raw, 9))
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


# ---------------------------------------------------------------------------------------------------------------
# Rows: checked before any image is decoded


def check_row(row: RawRow) -> tuple[str, str] | None:
    """Fix up what is unambiguous (answer type inferred, option casing), return (reason, detail) for the rest."""
    if row.problem:
        return row.problem
    if not row.question:
        return "empty_question", "the question is empty"
    if not row.answer:
        return "empty_answer", "the answer is empty"
    if not row.answer_type:
        closed = row.answer.lower() in ("yes", "no")
        row.answer_type = "multiple_choice" if row.choices else "closed" if closed else "open"
    if row.answer_type not in ANSWER_TYPES:
        return "unknown_answer_type", f"answer_type {row.answer_type!r}"
    if row.answer_type != "multiple_choice":
        row.choices = []  # the schema keeps options for multiple choice only
        return None
    folded = [" ".join(c.casefold().split()) for c in row.choices]
    if len(folded) < 2 or "" in folded or len(set(folded)) < len(folded):
        return "bad_choices", f"options {row.choices!r}: need two or more, distinct and non-empty"
    answer = " ".join(row.answer.casefold().split())
    if answer not in folded:
        return "answer_not_in_choices", f"answer {row.answer!r} is none of {row.choices!r}"
    row.answer = row.choices[folded.index(answer)]
    return None


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


# ---------------------------------------------------------------------------------------------------------------
# Leakage


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise bit distances of two uint64 vectors -> (len(a), len(b))."""
    x = a[:, None] ^ b[None, :]
    return _POPCOUNT[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1)


def find_leaks(seen: dict[str, int], new: dict[str, int]) -> list[tuple[str, str, int]]:
    """(image of `new`, image of `seen`, distance) for every `new` image already in `seen`: the same file
    (distance 0, same name) or a perceptual near-duplicate (pHash within PHASH_MAX_DISTANCE)."""
    leaks = [(name, name, 0) for name in new if name in seen]
    rest = [name for name in new if name not in seen]
    if not rest or not seen:
        return leaks
    seen_names = list(seen)
    seen_hashes = np.array([seen[n] for n in seen_names], dtype=np.uint64)
    step = max(1, 4_000_000 // len(seen_names))  # bounds memory to a few hundred MB on PMC-VQA-sized sets
    for start in range(0, len(rest), step):
        chunk = rest[start : start + step]
        distances = _hamming(np.array([new[n] for n in chunk], dtype=np.uint64), seen_hashes)
        nearest = distances.argmin(axis=1)
        for name, j, d in zip(chunk, nearest, distances[np.arange(len(chunk)), nearest]):
            if d <= PHASH_MAX_DISTANCE:
                leaks.append((name, seen_names[j], int(d)))
    return leaks


@dataclass
class ImageIndex:
    """The images of one split: pHash by image name, and one row source per image (to show where a leak is)."""

    hashes: dict[str, int]
    sources: dict[str, str]
    rows: Counter


def _index(rows: list[dict], hashes: dict[str, int]) -> dict[str, ImageIndex]:
    by_split: dict[str, ImageIndex] = {}
    for row in rows:
        index = by_split.setdefault(row["split"], ImageIndex({}, {}, Counter()))
        index.hashes[row["image"]] = hashes[row["image"]]
        index.sources.setdefault(row["image"], row["source"])
        index.rows[row["image"]] += 1
    return by_split


def leak_report(seen: ImageIndex, new: ImageIndex) -> dict:
    """How many images (and rows) of `new` also occur in `seen`, with a few examples to look at."""
    leaks = find_leaks(seen.hashes, new.hashes)
    return {
        "same_content": sum(d == 0 and a == b for a, b, d in leaks),
        "near_duplicate": sum(a != b for a, b, _ in leaks),
        "rows_affected": sum(new.rows[a] for a, _, _ in leaks),
        "images_checked": len(new.hashes),
        "examples": [{"row": new.sources[a], "matches": seen.sources[b], "distance": d} for a, b, d in leaks[:5]],
    }


def _leaks_found(report: dict) -> int:
    return report["same_content"] + report["near_duplicate"]


# ---------------------------------------------------------------------------------------------------------------
# One dataset


def prepare_dataset(
    name: str,
    spec: DatasetSpec,
    data: DataConfig,
    out_dir: Path,
    training: dict[str, ImageIndex] | None = None,
) -> tuple[dict, dict[str, ImageIndex]]:
    """Read, check, normalise and write one dataset into `out_dir` (atomically). Returns (card, images by split).

    `training` (train-split images by training dataset) is given for unseen datasets: an image they share with a
    training set fails this dataset unless data.unseen_leakage is 'warn'.
    """
    source = read(spec, data)
    quarantine: list[dict] = []
    kept: list[tuple[int, RawRow]] = []
    for position, row in enumerate(source.rows):
        if problem := check_row(row):
            quarantine.append(_record(name, position, row, *problem))
        else:
            kept.append((position, row))
    with atomic_dir(out_dir) as tmp:
        (tmp / "images").mkdir()
        images = normalise_all([row.image for _, row in kept], data.image_size, tmp / "images", data.num_workers)
        rows, hashes, first = [], {}, {}
        for (position, row), image in zip(kept, images):
            if isinstance(image, Rejected):
                quarantine.append(_record(name, position, row, image.reason, image.detail))
                continue
            key = (row.split, image.name, _fold(row.question), _fold(row.answer))
            if key in first:
                quarantine.append(_record(name, position, row, "duplicate", f"same as {first[key]}"))
                continue
            first[key] = row.source
            hashes[image.name] = image.phash
            rows.append(_output_row(name, len(rows), row, image.name))
        quarantine.sort(key=lambda r: r["position"])
        _check_quarantine(name, source, rows, quarantine, data.max_quarantine_fraction)
        by_split = _index(rows, hashes)
        leakage = _within(by_split)
        if training is not None:
            leakage.update(_against_training(name, by_split, training, data.unseen_leakage))
        frame = pd.DataFrame(rows, columns=list(COLUMNS))
        frame.to_parquet(tmp / "data.parquet", index=False)
        write_jsonl(tmp / "quarantine.jsonl", quarantine)
        card = _card(name, spec, data, source, frame, quarantine, leakage, tmp)
        write_json(tmp / "card.json", card)
        with atomic_file(tmp / "README.md") as handle:
            handle.write(readme(card))
    return card, by_split


def _output_row(dataset: str, index: int, row: RawRow, image: str) -> dict:
    return {
        "id": f"{dataset}-{index:06d}",
        "dataset": dataset,
        "split": row.split,
        "image": image,
        "question": row.question,
        "answer": row.answer,
        "answer_type": row.answer_type,
        "choices": list(row.choices),
        "modality": row.modality,
        "organ": row.organ,
        "reasoning": row.reasoning,
        "source": row.source,
    }


def _record(dataset: str, position: int, row: RawRow, reason: str, detail: str) -> dict:
    """A quarantine line: enough to find the row in the input and see why it was kept out."""
    return {"dataset": dataset, "position": position, "source": row.source, "split": row.split,
            "answer_type": row.answer_type, "reason": reason, "detail": detail, "question": row.question,
            "answer": row.answer}


def _check_quarantine(name: str, source: Source, rows: list[dict], quarantine: list[dict], limit: float) -> None:
    """Counts must reconcile; too many defects, or nothing left, fail the dataset with the reasons in view."""
    if len(source.rows) != len(rows) + len(quarantine):  # a bug in this module, never the data's fault
        raise AssertionError(f"{name}: {len(source.rows)} rows in != {len(rows)} out + {len(quarantine)} quarantined")
    defects = Counter(r["reason"] for r in quarantine if r["reason"] not in NOT_DEFECTS)
    considered = len(rows) + sum(defects.values())
    if not rows:
        raise DataError(f"dataset {name}: no usable rows out of {len(source.rows)} ({_reasons(quarantine)})")
    if sum(defects.values()) > limit * considered:
        example = next(r for r in quarantine if r["reason"] not in NOT_DEFECTS)
        raise DataError(
            f"dataset {name}: {sum(defects.values())} of {considered} rows quarantined "
            f"({sum(defects.values()) / considered:.1%} > data.max_quarantine_fraction {limit:.1%}): "
            f"{_reasons(quarantine)}; first: {example['source']}: {example['reason']}: {example['detail']}. "
            "Fix the input, or raise the threshold if this loss is expected"
        )


def _reasons(quarantine: list[dict]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in Counter(r["reason"] for r in quarantine).most_common())


def _within(by_split: dict[str, ImageIndex]) -> dict[str, dict]:
    """Each later split against each earlier one: train/validation, train/test, validation/test."""
    present = [s for s in SPLITS if s in by_split]
    return {f"{a}/{b}": leak_report(by_split[a], by_split[b]) for i, a in enumerate(present) for b in present[i + 1 :]}


def _against_training(name: str, by_split: dict[str, ImageIndex], training: dict[str, ImageIndex], mode: str) -> dict:
    everything = ImageIndex({}, {}, Counter())
    for index in by_split.values():
        everything.hashes.update(index.hashes)
        everything.sources.update(index.sources)
        everything.rows.update(index.rows)
    reports = {f"{train}:train/{name}": leak_report(index, everything) for train, index in training.items()}
    for key, report in reports.items():
        if not _leaks_found(report):
            continue
        example = report["examples"][0]
        message = (
            f"dataset {name} is an unseen evaluation set, but {_leaks_found(report)} of its images are in the "
            f"training set ({key}: {report['same_content']} same content, {report['near_duplicate']} "
            f"near-duplicates; e.g. {example['row']} ~ {example['matches']}): evaluating on them would fake "
            "generalisation"
        )
        if mode == "error":
            raise DataError(f"{message}. Remove them from one side, or set data.unseen_leakage: warn to only report it")
        print(f"warning: {message} (data.unseen_leakage: warn)", flush=True)
    return reports


# ---------------------------------------------------------------------------------------------------------------
# The data card


def _card(name, spec, data, source: Source, frame: pd.DataFrame, quarantine, leakage, folder: Path) -> dict:
    counts: dict = defaultdict(lambda: defaultdict(Counter))
    for split, kind in zip(frame["split"], frame["answer_type"]):
        counts[split][kind]["out"] += 1
    for record in quarantine:
        counts[record["split"] or "?"][record["answer_type"] or "?"]["quarantined"] += 1
    for per_type in counts.values():
        for tally in per_type.values():
            tally["in"] = tally["out"] + tally["quarantined"]
    reasons = Counter(r["reason"] for r in quarantine)
    return {
        "name": name,
        "format": spec.format,
        "source": source.description,
        "licence": source.licence,
        "rows_in": len(source.rows),
        "rows": len(frame),
        "rows_quarantined": len(quarantine),
        "quarantined": dict(reasons.most_common()),
        "defects": sum(n for r, n in reasons.items() if r not in NOT_DEFECTS),
        "max_quarantine_fraction": data.max_quarantine_fraction,
        "images": int(frame["image"].nunique()),
        "image_size": data.image_size,
        "by_split": {s: int(n) for s, n in Counter(frame["split"]).items()},
        "by_answer_type": {s: int(n) for s, n in Counter(frame["answer_type"]).items()},
        "by_modality": {s or "unknown": int(n) for s, n in Counter(frame["modality"]).items()},
        "counts": {s: {t: dict(c) for t, c in sorted(per.items())} for s, per in _split_order(counts)},
        "leakage": leakage,
        "phash_max_distance": PHASH_MAX_DISTANCE,
        "notes": source.notes,
        "inputs": {_relative(path, spec.path): _sha256(path) for path in source.files},
        "hashes": {
            "data.parquet": _sha256(folder / "data.parquet"),
            "quarantine.jsonl": _sha256(folder / "quarantine.jsonl"),
            "images": hashlib.sha256("\n".join(sorted(frame["image"].unique())).encode()).hexdigest(),
        },
    }


def _split_order(counts: dict) -> list:
    return sorted(counts.items(), key=lambda kv: SPLITS.index(kv[0]) if kv[0] in SPLITS else len(SPLITS))


def _relative(path: Path, root: str) -> str:
    """An input file as named under the dataset's path, so that the card does not depend on where it is checked out."""
    return path.relative_to(root).as_posix() if Path(root).is_dir() else path.name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def count_lines(card: dict) -> Iterator[str]:
    """The counts table and leakage summary of one card, as printed by the stage and written to README.md."""
    yield (f"{card['name']}: {card['rows_in']} rows in = {card['rows']} out + {card['rows_quarantined']} "
           f"quarantined; {card['images']} images")
    yield f"  {'split':<11}{'answer type':<17}{'in':>7}{'out':>7}{'quarantined':>13}"
    for split, per_type in card["counts"].items():
        for kind, tally in per_type.items():
            yield (f"  {split:<11}{kind:<17}{tally.get('in', 0):>7}{tally.get('out', 0):>7}"
                   f"{tally.get('quarantined', 0):>13}")
    if card["quarantined"]:
        yield "  quarantined: " + ", ".join(f"{reason} {n}" for reason, n in card["quarantined"].items())
    for pair, report in card["leakage"].items():
        yield (f"  leakage {pair}: {report['same_content']} same image, {report['near_duplicate']} near-duplicate "
               f"(pHash <= {card['phash_max_distance']} bits) of {report['images_checked']} images; "
               f"{report['rows_affected']} rows")


def readme(card: dict) -> str:
    """The card for people: where the data came from, its licence, the counts table and what each reason means."""
    table = "\n".join(count_lines(card))
    reasons = "".join(f"- `{reason}`: {REASONS[reason]}\n" for reason in card["quarantined"])
    reasons += "\n" if reasons else ""
    return (
        f"# {card['name']}\n\n"
        f"Source: {card['source']}  \nLicence: {card['licence']}  \n"
        f"Images: RGB PNG, longest side <= {card['image_size']} px, named by content.\n\n"
        f"```text\n{table}\n```\n\n{reasons}"
        "Files: `data.parquet` (schema: rarl_core/schema.py), `images/`, `quarantine.jsonl` (every row not kept, "
        "with its reason), `card.json` (these numbers, input and output hashes).\n"
    )


# ---------------------------------------------------------------------------------------------------------------
# All datasets


def prepare(data: DataConfig, prepared_dir: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """Prepare every dataset in params.yaml. Returns (cards of those written, error message of those that failed).

    A dataset that fails leaves no output and does not stop the others. Training sets go first, so that each
    unseen set is checked against their images before it is written.
    """
    order = sorted(data.datasets, key=lambda n: n not in data.train)
    training: dict[str, ImageIndex] = {}
    cards, failures = {}, {}
    for name in order:
        checked = dict(training) if name in data.unseen else None
        try:
            card, by_split = prepare_dataset(name, data.datasets[name], data, Path(prepared_dir) / name, checked)
        except DataError as err:
            failures[name] = str(err)
            print(f"{name}: FAILED: {err}", flush=True)
            continue
        if name in data.train and "train" in by_split:
            training[name] = by_split["train"]
        cards[name] = card
        print("\n".join(count_lines(card)), flush=True)
    return {n: cards[n] for n in data.datasets if n in cards}, failures
