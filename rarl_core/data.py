"""Preparation: every dataset becomes one normalised, content-addressed form (see rarl_core/schema.py).

Output per dataset: `<prepared>/<name>/data.parquet` (one row per question, both splits), `images/<sha256>.png`
(RGB, normalised once so training never re-decodes a large DICOM), and `card.json` (counts, source, hashes).
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pandas as pd
from PIL import Image

from rarl_core.config import DataConfig, DatasetSpec
from rarl_core.io import atomic_dir, write_json
from rarl_core.schema import ANSWER_TYPES, COLUMNS, SPLITS


class DataError(ValueError):
    """A dataset is malformed: the message names the file/row and what to do."""


def save_image(image: Image.Image, images_dir: Path) -> str:
    """Write `image` as PNG named by the hash of its bytes; identical images share one file."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", optimize=False)
    data = buffer.getvalue()
    name = hashlib.sha256(data).hexdigest()[:32] + ".png"
    target = images_dir / name
    if not target.exists():
        target.write_bytes(data)
    return name


@lru_cache(maxsize=2)
def _starter(image_size: int, seed: int):
    from rarl_core.starter import build_starter

    return build_starter(image_size=image_size, seed=seed)


def _starter_rows(name: str, spec: DatasetSpec, data: DataConfig, images_dir: Path) -> tuple[list[dict], list[str]]:
    examples, skipped = _starter(data.image_size, data.seed)
    rows = []
    for example in (e for e in examples if e.group == spec.group):
        rows.append(
            {
                "id": f"{name}-{len(rows):06d}",
                "dataset": name,
                "split": example.split,
                "image": save_image(example.image, images_dir),
                "question": example.question,
                "answer": example.answer,
                "answer_type": example.answer_type,
                "choices": list(example.choices),
                "modality": example.modality,
                "organ": example.organ,
                "reasoning": example.reasoning,
                "source": example.source,
            }
        )
    return rows, skipped


def validate_rows(rows: list[dict], name: str) -> None:
    """Check the schema so no stage downstream meets a surprise."""
    for row in rows:
        where = f"dataset {name}, row {row.get('id', '?')} ({row.get('source', '?')})"
        if set(row) != set(COLUMNS):
            raise DataError(f"{where}: columns {sorted(row)} differ from the schema {sorted(COLUMNS)}")
        if row["split"] not in SPLITS or row["answer_type"] not in ANSWER_TYPES:
            raise DataError(f"{where}: bad split {row['split']!r} or answer_type {row['answer_type']!r}")
        if not str(row["question"]).strip() or not str(row["answer"]).strip():
            raise DataError(f"{where}: empty question or answer")


def prepare_dataset(name: str, spec: DatasetSpec, data: DataConfig, out_dir: Path) -> dict:
    """Normalise one dataset into `out_dir` (written atomically). Returns its data card."""
    with atomic_dir(out_dir) as tmp:
        images_dir = tmp / "images"
        images_dir.mkdir()
        rows, skipped = _starter_rows(name, spec, data, images_dir)
        validate_rows(rows, name)
        frame = pd.DataFrame(rows, columns=list(COLUMNS))
        frame.to_parquet(tmp / "data.parquet", index=False)
        card = {
            "name": name,
            "format": spec.format,
            "source": f"bundled starter set, group {spec.group} (pydicom, nibabel and scikit-image test images)",
            "licence": "images: the packages' own licences (MIT / BSD); questions: generated from metadata",
            "rows": len(frame),
            "images": frame["image"].nunique(),
            "by_split": {s: int(n) for s, n in Counter(frame["split"]).items()},
            "by_answer_type": {s: int(n) for s, n in Counter(frame["answer_type"]).items()},
            "by_modality": {s: int(n) for s, n in Counter(frame["modality"]).items()},
            "skipped_sources": skipped,
            "sha256": hashlib.sha256((tmp / "data.parquet").read_bytes()).hexdigest(),
        }
        write_json(tmp / "card.json", card)
    return card


def prepare(data: DataConfig, prepared_dir: Path) -> dict[str, dict]:
    """Prepare every dataset declared in params.yaml. Returns the data cards by name."""
    return {name: prepare_dataset(name, spec, data, prepared_dir / name) for name, spec in data.datasets.items()}


def load_split(prepared_dir: Path, name: str, split: str) -> pd.DataFrame:
    """Rows of one split of a prepared dataset, with `image_path` resolved to the PNG file."""
    path = Path(prepared_dir) / name / "data.parquet"
    if not path.is_file():
        raise DataError(f"{path} not found: run the prepare stage first (dvc repro prepare)")
    frame = pd.read_parquet(path)
    frame = frame[frame["split"] == split].reset_index(drop=True)
    frame["image_path"] = [str(Path(prepared_dir) / name / "images" / image) for image in frame["image"]]
    frame["choices"] = [list(c) for c in frame["choices"]]
    return frame
