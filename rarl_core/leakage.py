"""Leakage: the same picture in train and test measures recall, and in a training set and an "unseen" set it fakes
generalisation (a circulating VQA-RAD split leaks all its test images into train). Images are matched by content
(the same file name: prepared PNGs are named by their bytes) and by perceptual hash (re-encoded copies).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

PHASH_MAX_DISTANCE = 4  # of 64 bits: JPEG re-encodes (q >= 70) land within it; distinct starter images stay >= 6


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


def index_by_split(rows: list[dict], hashes: dict[str, int]) -> dict[str, ImageIndex]:
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


def leaks_found(report: dict) -> int:
    return report["same_content"] + report["near_duplicate"]
