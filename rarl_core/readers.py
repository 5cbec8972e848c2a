"""Readers for the medical VQA datasets users download: each turns one format's files into `RawRow`s.

A reader only parses. It decodes no image and judges no row: problems it can see in one row (another language, an
unknown split, choices that do not parse) ride along as `RawRow.problem`, so that `rarl_core.data` quarantines them
beside every other defect and the counts reconcile. A problem with a whole file (wrong columns, bad JSON, an
unreadable parquet) raises `DataError` naming the file: that dataset stops, the others go on.

Layouts are the ones the datasets are published in (rarl-facts.md); `DATASET_LAYOUTS` in rarl_core/config.py says
what `path` points at for each format.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pandas as pd
from PIL import Image

from rarl_core.config import DATASET_LAYOUTS, DataConfig, DatasetSpec
from rarl_core.schema import SPLITS, DataError

ImageRef = bytes | Path | Image.Image  # encoded bytes, a file (image or DICOM), or a decoded picture (starter set)


@dataclass
class RawRow:
    """One question as read, before validation. `answer_type` '' means: infer it from the answer and choices."""

    split: str
    question: str
    answer: str
    image: ImageRef | None
    source: str  # file and row, e.g. "train.json#12 qid=3"; never a patient identifier
    answer_type: str = ""
    choices: list[str] = field(default_factory=list)
    modality: str = ""
    organ: str = ""
    reasoning: str = ""
    problem: tuple[str, str] | None = None  # (reason, detail): the reader already knows this row cannot be used


@dataclass
class Source:
    """What a reader returns: the rows, the input files it read (hashed for the data card), and provenance."""

    rows: list[RawRow]
    description: str
    licence: str
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


LICENCES = {
    "starter": "images: the packages' own licences (pydicom MIT, nibabel MIT, scikit-image BSD-3); questions: "
    "generated from metadata",
    "vqa_rad": "CC0-1.0",
    "pathvqa": "MIT (dataset card); the images remain under their publishers' copyright",
    "slake": "CC-BY-4.0",
    "pmc_vqa": "not stated by the authors",
    "generic": "not stated",
}
HUB_FORMATS = ("vqa_rad", "pathvqa")  # their hub form carries the images; the others ship zips to unpack first
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_YES_NO = {"yes", "no"}


def read(spec: DatasetSpec, data: DataConfig) -> Source:
    """Read one dataset. Anything that goes wrong while parsing its files becomes a DataError naming the path."""
    try:
        return READERS[spec.format](spec, data)
    except DataError:
        raise
    except Exception as err:  # a parser's own error (pyarrow, csv, unicode): name the dataset, keep the cause
        raise DataError(f"{spec.path}: cannot be read as {spec.format}: {type(err).__name__}: {err}") from err


# ---------------------------------------------------------------------------------------------------------------
# Where the files are


def locate(spec: DatasetSpec) -> Path | str:
    """The dataset's folder or file; a hub id (str) when the path is not on disk but names one and we may go online."""
    path = Path(spec.path)
    if path.exists():
        return path
    where = f"{spec.path} not found (relative to {Path.cwd()}); expected {DATASET_LAYOUTS[spec.format]}"
    if not _HUB_ID.fullmatch(spec.path) or path.suffix in (".csv", ".jsonl", ".json", ".parquet"):
        raise DataError(where)
    if spec.format not in HUB_FORMATS:
        raise DataError(f"{where}. It looks like a hub id, but the {spec.format} format is read from disk: download "
                        f"and unzip it (hf download {spec.path} --repo-type dataset --local-dir data/raw/<name>) "
                        "and set path to that folder")
    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(variable, "").lower() in ("1", "true", "yes", "on"):
            raise DataError(
                f"{spec.path} is not on disk and looks like a hub id, but {variable}={os.environ[variable]} forbids "
                f"downloading it: on a machine with access run `hf download {spec.path} --repo-type dataset "
                f"--local-dir data/raw/{spec.path.split('/')[-1]}` and set path to that folder (or unset {variable})"
            )
    return spec.path


def split_files(root: Path, spec: DatasetSpec, published: dict[str, str]) -> dict[str, list[Path]]:
    """Files per split: `spec.split_files` when given (each must match), else whichever published files exist."""
    patterns = spec.split_files or published
    found = {split: sorted(p for p in root.glob(pattern) if p.is_file()) for split, pattern in patterns.items()}
    if spec.split_files and (missing := [f"{s}: {patterns[s]}" for s, files in found.items() if not files]):
        raise DataError(f"{root}: no file matches split_files {', '.join(missing)}")
    found = {split: files for split, files in found.items() if files}
    if not found:
        listed = ", ".join(patterns.values())
        raise DataError(f"{root}: none of {listed} found; expected {DATASET_LAYOUTS[spec.format]}")
    return found


def image_folder(spec: DatasetSpec, base: Path, published: str) -> Path:
    """A missing image folder is a layout problem (a zip not unpacked), not thousands of missing_image rows."""
    folder = base / (spec.images or published)
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found; expected {DATASET_LAYOUTS[spec.format]}")
    return folder


def _text(value) -> str:
    """A cell as text: missing values (None, NaN) become '', so that the row is quarantined as empty, not 'nan'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _closed_or_open(answer: str) -> str:
    return "closed" if answer.lower() in _YES_NO else "open"


# ---------------------------------------------------------------------------------------------------------------
# The bundled starter set


@lru_cache(maxsize=2)
def _starter(image_size: int, seed: int):
    from rarl_core.starter import build_starter

    return build_starter(image_size=image_size, seed=seed)


def read_starter(spec: DatasetSpec, data: DataConfig) -> Source:
    """The bundled set (rarl_core/starter.py): one source group, pictures already drawn at data.image_size."""
    examples, skipped = _starter(data.image_size, data.seed)
    rows = [
        RawRow(e.split, e.question, e.answer, e.image, e.source, e.answer_type, list(e.choices), e.modality, e.organ,
               e.reasoning)
        for e in examples if e.group == spec.group
    ]
    description = f"bundled starter set, group {spec.group} (pydicom, nibabel and scikit-image test images)"
    return Source(rows, description, LICENCES["starter"], notes=skipped)


# ---------------------------------------------------------------------------------------------------------------
# VQA-RAD and PathVQA: the hub's parquet export (columns image {bytes, path}, question, answer)

PARQUET_COLUMNS = ("image", "question", "answer")


def read_hub_parquet(spec: DatasetSpec, data: DataConfig) -> Source:
    """Closed questions are the yes/no ones (both datasets' own convention); the rest are open."""
    where = locate(spec)
    if isinstance(where, str):
        frames, files = _hub_frames(where), []
    else:
        found = split_files(where, spec, {split: f"**/{split}-*.parquet" for split in SPLITS})
        files = [f for fs in found.values() for f in fs]
        frames = [(split, f.relative_to(where).as_posix(), f.parent, _read_parquet(f)) for split, fs in found.items()
                  for f in fs]
    rows = []
    for split, label, base, frame in frames:
        if missing := [c for c in PARQUET_COLUMNS if c not in frame.columns]:
            raise DataError(f"{label}: missing columns {missing} (found {list(frame.columns)}); a {spec.format} "
                            f"parquet export has columns {', '.join(PARQUET_COLUMNS)}")
        for i, (image, question, answer) in enumerate(frame[list(PARQUET_COLUMNS)].itertuples(index=False)):
            ref, problem = _parquet_image(image, base)
            answer = _text(answer)
            rows.append(RawRow(split, _text(question), answer, ref, f"{label}#{i}", _closed_or_open(answer),
                               problem=problem))
    name = {"vqa_rad": "VQA-RAD", "pathvqa": "PathVQA"}[spec.format]
    description = f"{name}, " + (f"hub:{where}" if isinstance(where, str) else f"parquet export at {spec.path}")
    return Source(rows, description, spec.licence or LICENCES[spec.format], files)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as err:
        raise DataError(f"{path}: not a readable parquet file ({type(err).__name__}: {err})") from None


def _parquet_image(cell, base: Path) -> tuple[ImageRef | None, tuple[str, str] | None]:
    """The hub's Image feature is stored as {bytes, path}: bytes when embedded, else a path beside the file."""
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return bytes(cell["bytes"]), None
        cell = cell.get("path")
    if isinstance(cell, (bytes, bytearray)) and cell:
        return bytes(cell), None
    if isinstance(cell, str) and cell:
        return base / cell, None
    return None, ("missing_image", "the row's image has neither bytes nor a path")


def _hub_frames(hub_id: str) -> list[tuple[str, str, Path, pd.DataFrame]]:
    """Online only: load through `datasets`, images kept as encoded bytes (decoded once, by the normaliser)."""
    import datasets

    try:
        loaded = datasets.load_dataset(hub_id)
    except Exception as err:
        raise DataError(f"{hub_id}: could not be loaded from the hub ({type(err).__name__}: {err}); download it "
                        "(hf download ... --repo-type dataset) and set path to the folder") from None
    frames = []
    for split, table in loaded.items():
        if split not in SPLITS:
            raise DataError(f"hub:{hub_id} has split {split!r}; splits are {', '.join(SPLITS)}")
        if "image" in table.features:
            table = table.cast_column("image", datasets.Image(decode=False))
        frames.append((split, f"hub:{hub_id}/{split}", Path.cwd(), table.to_pandas()))
    return frames


# ---------------------------------------------------------------------------------------------------------------
# SLAKE: train.json / validation.json / test.json (lists of objects) + imgs/<img_name>

SLAKE_FILES = {"train": "train.json", "validation": "validation.json", "test": "test.json"}
SLAKE_KEYS = ("img_name", "question", "answer", "answer_type", "q_lang")


def read_slake(spec: DatasetSpec, data: DataConfig) -> Source:
    """English rows by default (`language`); answer_type OPEN/CLOSED as published; modality and location kept."""
    root = locate(spec)
    images = image_folder(spec, root, "imgs")
    found = split_files(root, spec, SLAKE_FILES)
    rows = []
    for split, files in found.items():
        for file in files:
            for i, record in enumerate(_read_json_list(file, SLAKE_KEYS)):
                language = _text(record["q_lang"])
                problem = None
                if language != spec.language:
                    problem = ("other_language", f"q_lang {language!r}; this dataset keeps {spec.language!r}")
                rows.append(RawRow(
                    split, _text(record["question"]), _text(record["answer"]), images / _text(record["img_name"]),
                    f"{file.name}#{i} qid={_text(record.get('qid'))}", _text(record["answer_type"]).lower(),
                    modality=_text(record.get("modality")), organ=_text(record.get("location")), problem=problem,
                ))
    files = [f for fs in found.values() for f in fs]
    return Source(rows, f"SLAKE JSON at {spec.path}", spec.licence or LICENCES["slake"], files)


def _read_json_list(path: Path, keys: tuple[str, ...]) -> list[dict]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(f"{path}: expected a JSON list of objects (one per question)")
    for i, record in enumerate(records):
        if missing := [k for k in keys if k not in record]:
            raise DataError(f"{path}: row {i} lacks {missing}; every row needs {', '.join(keys)}")
    return records


# ---------------------------------------------------------------------------------------------------------------
# PMC-VQA: train.csv / test.csv (Figure_path, Question, Answer, Choice A-D, Answer_label) + images/

PMC_FILES = {"train": "train.csv", "test": "test.csv"}
PMC_COLUMNS = ("Figure_path", "Question", "Choice A", "Choice B", "Choice C", "Choice D")
_LETTER_PREFIX = re.compile(r"^\s*[A-D]\s*:\s*")  # PMC-VQA writes choices as "A:Focal uptake pattern "


def read_pmc_vqa(spec: DatasetSpec, data: DataConfig) -> Source:
    """Multiple choice; the answer is the option text. Answer_label (the letter) wins when both are present and
    must name the same option as Answer, or the row is quarantined."""
    root = locate(spec)
    images = image_folder(spec, root, "images")
    found = split_files(root, spec, PMC_FILES)
    rows = []
    for split, files in found.items():
        for file in files:
            frame = _read_csv(file)
            missing = [c for c in PMC_COLUMNS if c not in frame.columns]
            if missing or not {"Answer", "Answer_label"} & set(frame.columns):
                raise DataError(f"{file}: missing columns {missing or ['Answer or Answer_label']} (found "
                                f"{list(frame.columns)}); PMC-VQA has {', '.join(PMC_COLUMNS)}, Answer, Answer_label")
            for i, record in enumerate(frame.to_dict("records")):
                choices = [_LETTER_PREFIX.sub("", _text(record[f"Choice {letter}"])) for letter in "ABCD"]
                answer, problem = _pmc_answer(record, choices)
                rows.append(RawRow(split, _text(record["Question"]), answer, images / _text(record["Figure_path"]),
                                   f"{file.name}#{i}", "multiple_choice", [c for c in choices if c], problem=problem))
    files = [f for fs in found.values() for f in fs]
    return Source(rows, f"PMC-VQA CSV at {spec.path}", spec.licence or LICENCES["pmc_vqa"], files)


def _pmc_answer(record: dict, choices: list[str]) -> tuple[str, tuple[str, str] | None]:
    answer = _LETTER_PREFIX.sub("", _text(record.get("Answer")))
    label = _text(record.get("Answer_label")).upper()
    if not label:
        return answer, None
    if label not in "ABCD" or len(label) != 1 or not choices["ABCD".index(label)]:
        return answer, ("answer_not_in_choices", f"Answer_label {label!r} names no option")
    chosen = choices["ABCD".index(label)]
    if answer and _fold(answer) != _fold(chosen):
        return answer, ("answer_not_in_choices", f"Answer {answer!r} is not Choice {label} {chosen!r}")
    return chosen, None


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as err:
        raise DataError(f"{path}: not a readable CSV file ({type(err).__name__}: {err})") from None
    return frame.rename(columns=lambda c: str(c).strip())


def _fold(text: str) -> str:
    """Case- and whitespace-insensitive form, for comparing answers with options."""
    return " ".join(text.casefold().split())


# ---------------------------------------------------------------------------------------------------------------
# Generic: one .jsonl or .csv file + an image folder (SilVar-Med, a hospital's own set, ...)

GENERIC_REQUIRED = ("image", "question", "answer", "split")
GENERIC_OPTIONAL = ("id", "answer_type", "choices", "modality", "organ", "reasoning")


def read_generic(spec: DatasetSpec, data: DataConfig) -> Source:
    """Columns `image` (a file under the image folder: PNG, JPEG, ... or DICOM), question, answer, split; optional
    id, answer_type (inferred when empty), choices (a list; in CSV a JSON list), modality, organ, reasoning."""
    path = locate(spec)
    if isinstance(path, str) or not path.is_file():
        raise DataError(f"{spec.path}: expected {DATASET_LAYOUTS['generic']}")
    images = image_folder(spec, path.parent, "")
    records = _read_jsonl(path) if path.suffix == ".jsonl" else _read_csv(path).to_dict("records")
    columns = set().union(*map(set, records)) if records else set()
    if missing := [c for c in GENERIC_REQUIRED if c not in columns]:
        raise DataError(f"{path}: missing columns {missing} (found {sorted(columns)}); needed: "
                        f"{', '.join(GENERIC_REQUIRED)}; optional: {', '.join(GENERIC_OPTIONAL)}")
    first_line = 1 if path.suffix == ".jsonl" else 2  # CSV rows start below the header
    rows = []
    for i, record in enumerate(records):
        source = f"{path.name}:{first_line + i}" + (f" id={_text(record['id'])}" if _text(record.get("id")) else "")
        split, image = _text(record.get("split")).lower(), _text(record.get("image"))
        choices, problem = _choices(record.get("choices"))
        if not image:
            problem = ("missing_image", "the row names no image")
        elif split not in SPLITS:
            problem = ("unknown_split", f"split {split!r}; splits are {', '.join(SPLITS)}")
        rows.append(RawRow(
            split, _text(record.get("question")), _text(record.get("answer")), images / image, source,
            _text(record.get("answer_type")).lower(), choices, _text(record.get("modality")),
            _text(record.get("organ")), _text(record.get("reasoning")), problem,
        ))
    extra = columns - set(GENERIC_REQUIRED + GENERIC_OPTIONAL)
    notes = [f"ignored columns: {sorted(extra)}"] if extra else []
    return Source(rows, f"generic rows at {spec.path}", spec.licence or LICENCES["generic"], [path], notes)


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: not valid JSON ({err.msg}); fix or remove that line") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object per line")
            records.append(record)
    return records


def _choices(value) -> tuple[list[str], tuple[str, str] | None]:
    """A list of options; CSV cells hold it as a JSON list. Empty means no choices."""
    if isinstance(value, str):
        if not value.strip():
            return [], None
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return [], ("bad_choices", f"choices {value!r} is not a JSON list")
    if value is None:
        return [], None
    if not isinstance(value, list):
        return [], ("bad_choices", f"choices must be a list, not {type(value).__name__}")
    return [_text(c) for c in value], None


READERS: dict[str, Callable[[DatasetSpec, DataConfig], Source]] = {
    "starter": read_starter,
    "vqa_rad": read_hub_parquet,
    "pathvqa": read_hub_parquet,
    "slake": read_slake,
    "pmc_vqa": read_pmc_vqa,
    "generic": read_generic,
}
