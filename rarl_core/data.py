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
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from rarl_core.images import Rejected, normalise_all
from rarl_core.leakage import PHASH_MAX_DISTANCE, ImageIndex, index_by_split, leak_report, leaks_found
from rarl_core.readers import RawRow, Source, read
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
        by_split = index_by_split(rows, hashes)
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
        if not leaks_found(report):
            continue
        example = report["examples"][0]
        message = (
            f"dataset {name} is an unseen evaluation set, but {leaks_found(report)} of its images are in the "
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
