"""The one row schema every dataset is normalised to.

Prepared data is a parquet table per dataset with exactly these columns. Readers (starter set, VQA-RAD, SLAKE, ...)
produce rows of this shape, so that every later stage reads one format, through `load_split`.
"""

from __future__ import annotations

from pathlib import Path

class DataError(ValueError):
    """A dataset is malformed or missing: the message names the file/row and what to do."""


ANSWER_TYPES = ("closed", "open", "multiple_choice")
# SLAKE and PathVQA publish a validation split. It is kept as its own split rather than folded into train: no stage
# trains or evaluates on it today, so it stays free for model selection and never blurs the published test set.
SPLITS = ("train", "validation", "test")

# column -> meaning. Order is the column order written to parquet.
COLUMNS = {
    "id": "stable row id, unique within the dataset (e.g. 'starter_a-000123')",
    "dataset": "dataset name as declared in params.yaml",
    "split": "'train', 'validation' or 'test'",
    "image": "image file name, content-addressed (<sha256 of PNG bytes>.png), relative to the dataset's images/ folder",
    "question": "the question text, as asked",
    "answer": "ground-truth answer; for multiple choice the option text, not the letter",
    "answer_type": "'closed' (yes/no, or a closed set such as SLAKE's 'liver or spleen?'), 'open' or 'multiple_choice'",
    "choices": "list of option texts for multiple choice, else empty list",
    "modality": "imaging modality when known (CT, MRI, ultrasound, fundus, histology, X-ray, ...), else ''",
    "organ": "organ or body region when known, else ''",
    "reasoning": "a short explanation true by construction, used as the SFT <think> target; '' when none",
    "source": "where the row came from (file and row/frame), for tracing back; never a patient identifier",
}


def load_split(prepared_dir: str | Path, name: str, split: str):
    """Rows of one split of a prepared dataset, with `image_path` resolved to the PNG file."""
    import pandas as pd

    path = Path(prepared_dir) / name / "data.parquet"
    if not path.is_file():
        raise DataError(f"{path} not found: run the prepare stage first (dvc repro prepare)")
    frame = pd.read_parquet(path)
    frame = frame[frame["split"] == split].reset_index(drop=True)
    frame["image_path"] = [str(Path(prepared_dir) / name / "images" / image) for image in frame["image"]]
    frame["choices"] = [list(c) for c in frame["choices"]]
    return frame
