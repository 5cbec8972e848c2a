"""Each real dataset format, written small inside the test from the bundled images, read through its adapter:
good rows land in data.parquet, every broken row in quarantine.jsonl with its reason, a broken file stops the
dataset with the file named, and no DICOM identifier reaches any output."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from rarl_core import readers
from rarl_core.config import ConfigError
from rarl_core.data import DataError, prepare_dataset
from rarl_core.images import window
from tests.conftest import config_with

# Identifiers of the DICOM basic de-identification profile, set to values that must never leave the file.
SENTINELS = {
    "PatientName": "Zyxwvut^Sentinel",
    "PatientID": "SENTINEL-ID-8841",
    "PatientBirthDate": "19010203",
    "PatientAddress": "1 Sentinelweg",
    "OtherPatientIDs": "SENTINEL-OTHER-5",
    "InstitutionName": "Sentinel Institute",
    "ReferringPhysicianName": "Qxq^Referrer",
    "AccessionNumber": "ACCSENT77",
    "StudyID": "STUDYSENT9",
}


# ---------------------------------------------------------------------------------------------------------------
# Builders (also used by test_data.py)


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    """Distinct real pictures: the first augmentation of each starter base image (the set is cached in-process)."""
    examples, _ = readers._starter(112, 0)
    seen, out = set(), []
    for e in examples:
        base = e.source.rsplit("#aug", 1)[0]
        if base not in seen:
            seen.add(base)
            out.append(e.image)
    return out[::7][:16]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def data_config(datasets: dict[str, dict], train: list[str] | None = None, unseen: list[str] = (), **options):
    """A validated DataConfig, exactly as params.yaml's data section would give it."""
    train = train or [next(iter(datasets))]
    section = {"datasets": datasets, "train": train, "in_domain": [], "unseen": list(unseen), **options}
    return config_with({"data": section}).data


def run(name: str, data, out: Path) -> tuple[dict, pd.DataFrame, list[dict]]:
    card, _ = prepare_dataset(name, data.datasets[name], data, out / name)
    frame = pd.read_parquet(out / name / "data.parquet")
    quarantine = [json.loads(line) for line in (out / name / "quarantine.jsonl").read_text().splitlines()]
    assert card["rows_in"] == len(frame) + len(quarantine) == card["rows"] + card["rows_quarantined"]
    return card, frame, quarantine


def reasons(quarantine: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for record in quarantine:
        out[record["reason"]] = out.get(record["reason"], 0) + 1
    return out


def sentinel_dicom(path: Path, **changes) -> pydicom.Dataset:
    """CT_small.dcm (HU via RescaleSlope 1 / Intercept -1024) with a soft-tissue window and sentinel identifiers."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    for keyword, value in {**SENTINELS, "WindowCenter": 40, "WindowWidth": 400, **changes}.items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    return ds


# ---------------------------------------------------------------------------------------------------------------
# VQA-RAD / PathVQA parquet exports


def write_parquet(path: Path, rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=["image", "question", "answer"])
    frame.to_parquet(path, index=False)


def test_vqa_rad_parquet_export(tmp_path, pictures):
    root = tmp_path / "vqa-rad"
    p = pictures
    (root / "data").mkdir(parents=True)
    (root / "data" / "beside.png").write_bytes(png(p[5]))
    write_parquet(root / "data" / "train-00000-of-00001.parquet", [
        ({"bytes": png(p[0]), "path": "a.png"}, "Is this a CT scan?", "Yes"),
        ({"bytes": png(p[1]), "path": "b.png"}, "What organ is shown?", "brain"),
        ({"bytes": png(p[1]), "path": "b.png"}, "What organ is shown? ", "Brain"),  # duplicate
        ({"bytes": png(p[2])[:400], "path": "c.png"}, "Is there a fracture?", "no"),  # truncated PNG
        ({"bytes": png(p[3]), "path": "d.png"}, "Is the liver enlarged?", ""),  # empty answer
        ({"bytes": None, "path": "beside.png"}, "Where is the lesion?", "left lobe"),  # image as a path
    ])
    write_parquet(root / "data" / "test-00000-of-00001.parquet", [
        ({"bytes": png(p[4]), "path": "e.png"}, "Is there a mass?", "no"),
    ])
    data = data_config({"vqa_rad": {"format": "vqa_rad", "path": str(root)}}, max_quarantine_fraction=1.0)
    card, frame, quarantine = run("vqa_rad", data, tmp_path / "out")

    assert card["rows_in"] == 7 and card["rows"] == 4 and card["licence"] == "CC0-1.0"
    assert reasons(quarantine) == {"duplicate": 1, "unreadable_image": 1, "empty_answer": 1}
    assert dict(zip(frame["answer"], frame["answer_type"])) == {"Yes": "closed", "brain": "open", "left lobe": "open",
                                                                 "no": "closed"}
    assert card["by_split"] == {"train": 3, "test": 1}
    truncated = next(r for r in quarantine if r["reason"] == "unreadable_image")
    assert truncated["source"] == "data/train-00000-of-00001.parquet#3" and "truncated" in truncated["detail"]
    assert card["counts"]["train"]["open"] == {"in": 4, "out": 2, "quarantined": 2}
    assert set(card["inputs"]) == {"data/train-00000-of-00001.parquet", "data/test-00000-of-00001.parquet"}


def test_pathvqa_keeps_its_validation_split(tmp_path, pictures):
    root = tmp_path / "path-vqa"
    for i, split in enumerate(("train", "validation", "test")):
        write_parquet(root / "data" / f"{split}-00000-of-00001.parquet",
                      [({"bytes": png(pictures[i]), "path": None}, "Is this tissue malignant?", "yes")])
    data = data_config({"pathvqa": {"format": "pathvqa", "path": str(root)}})
    card, frame, _ = run("pathvqa", data, tmp_path / "out")
    assert list(frame["split"]) == ["train", "validation", "test"]
    assert set(card["leakage"]) == {"train/validation", "train/test", "validation/test"}


def test_parquet_with_wrong_columns_or_garbage_stops_naming_the_file(tmp_path, pictures):
    root = tmp_path / "path-vqa"
    (root / "data").mkdir(parents=True)
    wrong = pd.DataFrame({"image": [{"bytes": png(pictures[0]), "path": None}], "question": ["q"], "label": ["yes"]})
    wrong.to_parquet(root / "data" / "train-0.parquet")
    data = data_config({"pathvqa": {"format": "pathvqa", "path": str(root)}})
    with pytest.raises(DataError, match=r"data/train-0\.parquet: missing columns \['answer'\]"):
        prepare_dataset("pathvqa", data.datasets["pathvqa"], data, tmp_path / "out" / "pathvqa")

    (root / "data" / "train-0.parquet").write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(DataError, match=r"train-0\.parquet: not a readable parquet file"):
        prepare_dataset("pathvqa", data.datasets["pathvqa"], data, tmp_path / "out" / "pathvqa")
    assert not (tmp_path / "out").exists()  # nothing written, not even a temporary folder


# ---------------------------------------------------------------------------------------------------------------
# SLAKE: JSON files + imgs/


def slake_row(img: str, question: str, answer: str, kind: str = "OPEN", lang: str = "en", qid: int = 0) -> dict:
    return {"img_id": 1, "img_name": img, "question": question, "answer": answer, "q_lang": lang, "qid": qid,
            "location": "Lung", "modality": "CT", "answer_type": kind, "base_type": "vqa", "content_type": "Organ"}


def write_slake(root: Path, pictures, splits: dict[str, list[dict]]) -> None:
    for i, picture in enumerate(pictures[:4]):
        (root / "imgs" / f"xmlab{i}").mkdir(parents=True, exist_ok=True)
        (root / "imgs" / f"xmlab{i}" / "source.jpg").write_bytes(jpeg(picture))
    for split, rows in splits.items():
        (root / f"{split}.json").write_text(json.dumps(rows, ensure_ascii=False))


def test_slake_json_with_language_filter_and_validation_split(tmp_path, pictures):
    root = tmp_path / "slake"
    write_slake(root, pictures, {
        "train": [
            slake_row("xmlab0/source.jpg", "Which organ is abnormal?", "Lung", qid=1),
            slake_row("xmlab0/source.jpg", "哪个器官不正常?", "肺", lang="zh", qid=2),
            slake_row("xmlab1/source.jpg", "Is the lung healthy?", "No", kind="CLOSED", qid=3),
            slake_row("xmlab1/source.jpg", "How many lesions?", "2", kind="COUNTING", qid=4),  # unknown type
            slake_row("xmlab9/source.jpg", "What modality?", "CT", qid=5),  # image not in imgs/
        ],
        "validation": [slake_row("xmlab2/source.jpg", "Where is the liver?", "Right", qid=6)],
        "test": [slake_row("xmlab3/source.jpg", "Is this an MRI?", "No", kind="CLOSED", qid=7)],
    })
    data = data_config({"slake": {"format": "slake", "path": str(root), "language": "en"}}, max_quarantine_fraction=0.5)
    card, frame, quarantine = run("slake", data, tmp_path / "out")
    assert card["by_split"] == {"train": 2, "validation": 1, "test": 1}
    assert reasons(quarantine) == {"other_language": 1, "unknown_answer_type": 1, "missing_image": 1}
    assert card["defects"] == 2  # the Chinese row is a choice, not a defect
    assert set(frame["modality"]) == {"CT"} and set(frame["organ"]) == {"Lung"}
    assert frame.loc[frame["question"] == "Is the lung healthy?", "answer_type"].item() == "closed"
    assert next(r for r in quarantine if r["reason"] == "missing_image")["source"] == "train.json#4 qid=5"

    chinese = data_config({"slake": {"format": "slake", "path": str(root), "language": "zh"}},
                          max_quarantine_fraction=1.0)
    _, frame, _ = run("slake", chinese, tmp_path / "zh")
    assert list(frame["question"]) == ["哪个器官不正常?"]


def test_slake_bad_json_or_missing_keys_stop_naming_the_file(tmp_path, pictures):
    root = tmp_path / "slake"
    write_slake(root, pictures, {"test": [slake_row("xmlab0/source.jpg", "q", "a")]})
    (root / "train.json").write_text('[{"img_name": "xmlab0/source.jpg",\n "question": }]')
    data = data_config({"slake": {"format": "slake", "path": str(root), "language": "en"}})
    with pytest.raises(DataError, match=r"train\.json: not valid JSON \(Expecting value at line 2 column 14\)"):
        prepare_dataset("slake", data.datasets["slake"], data, tmp_path / "out" / "slake")
    (root / "train.json").write_text(json.dumps([{"img_name": "xmlab0/source.jpg", "question": "q"}]))
    with pytest.raises(DataError, match=r"train\.json: row 0 lacks \['answer', 'answer_type', 'q_lang'\]"):
        prepare_dataset("slake", data.datasets["slake"], data, tmp_path / "out" / "slake")


def test_slake_without_its_image_folder_says_so(tmp_path):
    (tmp_path / "slake").mkdir()
    (tmp_path / "slake" / "test.json").write_text(json.dumps([slake_row("xmlab0/source.jpg", "q", "a")]))
    data = data_config({"slake": {"format": "slake", "path": str(tmp_path / "slake"), "language": "en"}})
    with pytest.raises(DataError, match=r"slake/imgs: image folder not found; expected .*unzipped imgs/"):
        prepare_dataset("slake", data.datasets["slake"], data, tmp_path / "out" / "slake")


# ---------------------------------------------------------------------------------------------------------------
# PMC-VQA: CSV with choices A-D + images/

PMC_HEADER = ["Figure_path", "Question", "Answer", "Choice A", "Choice B", "Choice C", "Choice D", "Answer_label"]
OPTIONS = ["A:CT scan ", "B:MRI ", "C:X-ray ", "D:Ultrasound "]


def test_pmc_vqa_csv_multiple_choice(tmp_path, pictures):
    root = tmp_path / "pmc"
    (root / "images").mkdir(parents=True)
    for i in range(3):
        (root / "images" / f"PMC{i}_F1.jpg").write_bytes(jpeg(pictures[i]))
    pd.DataFrame([
        ["PMC0_F1.jpg", "What imaging technique is used? ", "B:MRI ", *OPTIONS, "B"],
        ["PMC1_F1.jpg", "Which modality is shown?", "PET", *OPTIONS, ""],  # answer none of the options
        ["PMC1_F1.jpg", "What is the scan type?", "CT scan", *OPTIONS, "B"],  # Answer and Answer_label disagree
        ["PMC7_F1.jpg", "What is shown?", "MRI", *OPTIONS, "B"],  # image missing
        ["PMC1_F1.jpg", "What is this?", "X-ray", "A:CT ", "B:X-ray ", "C:x-ray", "D:MRI", ""],  # options repeat
    ], columns=PMC_HEADER).to_csv(root / "train.csv", index=False)
    pd.DataFrame([["PMC2_F1.jpg", "Which view?", "Ultrasound", *OPTIONS, "D"]], columns=PMC_HEADER) \
        .to_csv(root / "test.csv", index=False)
    data = data_config({"pmc": {"format": "pmc_vqa", "path": str(root)}}, max_quarantine_fraction=1.0)
    card, frame, quarantine = run("pmc", data, tmp_path / "out")
    assert list(frame["answer"]) == ["MRI", "Ultrasound"]
    assert [list(c) for c in frame["choices"]] == [["CT scan", "MRI", "X-ray", "Ultrasound"]] * 2
    assert set(frame["answer_type"]) == {"multiple_choice"}
    assert reasons(quarantine) == {"answer_not_in_choices": 2, "missing_image": 1, "bad_choices": 1}
    assert card["licence"] == "not stated by the authors"


def test_pmc_vqa_wrong_columns_stop_naming_the_file(tmp_path):
    (tmp_path / "pmc" / "images").mkdir(parents=True)
    pd.DataFrame([["a.jpg", "q", "A", "A:x", "B:y", "C:z"]],
                 columns=["Figure_path", "Question", "Answer", "Choice A", "Choice B", "Choice C"]) \
        .to_csv(tmp_path / "pmc" / "train.csv", index=False)
    data = data_config({"pmc": {"format": "pmc_vqa", "path": str(tmp_path / "pmc")}})
    with pytest.raises(DataError, match=r"train\.csv: missing columns \['Choice D'\]"):
        prepare_dataset("pmc", data.datasets["pmc"], data, tmp_path / "out" / "pmc")


# ---------------------------------------------------------------------------------------------------------------
# Generic JSONL / CSV + image folder, DICOM included


def test_generic_jsonl_and_csv_infer_types_and_quarantine_bad_rows(tmp_path, pictures):
    folder = tmp_path / "own"
    (folder / "img").mkdir(parents=True)
    for i in range(3):
        (folder / "img" / f"{i}.png").write_bytes(png(pictures[i]))
    rows = [
        {"id": "r1", "image": "0.png", "question": "Is this a CT image?", "answer": "yes", "split": "train"},
        {"image": "1.png", "question": "Which modality?", "answer": "mri", "choices": ["CT", "MRI"], "split": "train",
         "reasoning": "soft-tissue contrast, so MRI", "modality": "MRI"},
        {"image": "2.png", "question": "What organ?", "answer": "brain", "answer_type": "open", "split": "test"},
        {"image": "2.png", "question": "Which side?", "answer": "left", "split": "dev"},
        {"image": "2.png", "question": "  ", "answer": "left", "split": "test"},
        {"image": "0.png", "question": "Is this a CT image?", "answer": "Yes", "split": "train"},  # duplicate
        {"image": "1.png", "question": "Which modality?", "answer": "PET", "choices": ["CT", "MRI"], "split": "train"},
    ]
    (folder / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    frame_csv = pd.DataFrame(rows).assign(choices=[json.dumps(c) if isinstance(c, list) else "" for c in
                                                   [r.get("choices") for r in rows]])
    frame_csv.to_csv(folder / "rows.csv", index=False)
    expected = {"unknown_split": 1, "empty_question": 1, "duplicate": 1, "answer_not_in_choices": 1}
    for file in ("rows.jsonl", "rows.csv"):
        spec = {"format": "generic", "path": str(folder / file), "images": "img", "licence": "CC-BY-4.0"}
        data = data_config({"own": spec}, max_quarantine_fraction=1.0)
        card, frame, quarantine = run("own", data, tmp_path / file)
        assert list(frame["answer_type"]) == ["closed", "multiple_choice", "open"], file
        assert frame["answer"][1] == "MRI" and list(frame["choices"][1]) == ["CT", "MRI"]
        assert frame["reasoning"][1] == "soft-tissue contrast, so MRI"
        assert reasons(quarantine) == expected, file
        assert card["licence"] == "CC-BY-4.0"
    assert frame["source"][0] == "rows.csv:2 id=r1"


def test_generic_bad_jsonl_line_or_missing_column_stops_naming_the_file(tmp_path):
    good = '{"image": "a.png", "question": "q", "answer": "a", "split": "train"}'
    (tmp_path / "rows.jsonl").write_text(f"{good}\n{{oops\n")
    data = data_config({"own": {"format": "generic", "path": str(tmp_path / "rows.jsonl")}})
    with pytest.raises(DataError, match=r"rows\.jsonl:2: not valid JSON"):
        prepare_dataset("own", data.datasets["own"], data, tmp_path / "out")
    (tmp_path / "rows.jsonl").write_text('{"image": "a.png", "question": "q", "answer": "a"}\n')
    with pytest.raises(DataError, match=r"rows\.jsonl: missing columns \['split'\]"):
        prepare_dataset("own", data.datasets["own"], data, tmp_path / "out")


def test_dicom_is_windowed_and_no_identifier_reaches_any_output(tmp_path, pictures, capsys, caplog):
    folder = tmp_path / "hospital"
    folder.mkdir()
    ds = sentinel_dicom(folder / "scan.dcm")
    sentinel_dicom(folder / "burned.dcm", BurnedInAnnotation="YES")
    broken = sentinel_dicom(folder / "broken.dcm")
    broken.PixelData = broken.PixelData[:100]
    broken.save_as(folder / "broken.dcm")
    (folder / "photo.png").write_bytes(png(pictures[0]))
    rows = [
        {"image": "scan.dcm", "question": "What modality is this?", "answer": "CT", "split": "train"},
        {"image": "burned.dcm", "question": "What modality is this?", "answer": "CT", "split": "train"},
        {"image": "broken.dcm", "question": "What modality is this?", "answer": "CT", "split": "train"},
        {"image": "photo.png", "question": "Is this a CT image?", "answer": "no", "split": "test"},
    ]
    (folder / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    data = data_config({"ct": {"format": "generic", "path": str(folder / "rows.jsonl")}}, image_size=128,
                       max_quarantine_fraction=1.0)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        card, frame, quarantine = run("ct", data, tmp_path / "out")
    assert reasons(quarantine) == {"burned_in_annotation": 1, "unreadable_image": 1}
    assert next(r for r in quarantine if r["reason"] == "unreadable_image")["detail"].startswith("DICOM pixel data")

    # Windowing: stored value -> HU (slope 1, intercept -1024) -> window 40/400, exactly (PNG is lossless).
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = np.round(window(hu, 40, 400) * 255)
    written = np.asarray(Image.open(tmp_path / "out" / "ct" / "images" / frame["image"][0]))
    assert written.shape == (128, 128, 3) and np.abs(written[..., 0] - expected).max() <= 1

    printed = capsys.readouterr()
    outputs = [p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()]
    outputs.append((printed.out + printed.err + caplog.text + " ".join(str(w.message) for w in warned)).encode())
    for value in SENTINELS.values():
        needles = {value, *value.split("^")}
        for needle in needles:
            assert not any(needle.encode() in blob for blob in outputs), needle


def test_window_is_the_dicom_linear_formula():
    out = window(np.array([-1000.0, -160.0, 40.0, 239.5, 1000.0]), centre=40, width=400)
    assert out[0] == 0.0 and out[-1] == 1.0 and abs(out[2] - 0.5) < 0.01
    assert 0.0 <= out[1] < out[2] < out[3] <= 1.0


# ---------------------------------------------------------------------------------------------------------------
# Paths and hub ids


def test_missing_path_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = data_config({"x": {"format": "slake", "path": "downloads/slake/en", "language": "en"}})
    with pytest.raises(DataError, match=r"downloads/slake/en not found .*train\.json, validation\.json"):
        prepare_dataset("x", data.datasets["x"], data, tmp_path / "out")


def test_hub_id_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = data_config({"rad": {"format": "vqa_rad", "path": "flaviagiammarino/vqa-rad"},
                        "slake": {"format": "slake", "path": "BoKelvin/SLAKE", "language": "en"}})
    with pytest.raises(DataError) as err:
        prepare_dataset("rad", data.datasets["rad"], data, tmp_path / "out")
    message = str(err.value)
    assert "flaviagiammarino/vqa-rad" in message and "HF_HUB_OFFLINE=1" in message
    assert "hf download flaviagiammarino/vqa-rad --repo-type dataset" in message
    with pytest.raises(DataError, match="slake format is read from disk: download and unzip"):
        prepare_dataset("slake", data.datasets["slake"], data, tmp_path / "out")


def test_hub_id_online_goes_through_datasets(tmp_path, monkeypatch, pictures):
    """The online path, with `datasets.load_dataset` answering from memory instead of the hub."""
    import datasets

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)

    def split(i: int, answer: str) -> datasets.Dataset:
        image = {"bytes": png(pictures[i]), "path": None}
        table = {"image": [image], "question": ["Is it normal?"], "answer": [answer]}
        return datasets.Dataset.from_dict(table).cast_column("image", datasets.Image())

    asked = []

    def load_dataset(hub_id: str) -> datasets.DatasetDict:
        asked.append(hub_id)
        return datasets.DatasetDict({"train": split(0, "yes"), "test": split(1, "no")})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    data = data_config({"rad": {"format": "vqa_rad", "path": "flaviagiammarino/vqa-rad"}})
    card, frame, _ = run("rad", data, tmp_path / "out")
    assert asked == ["flaviagiammarino/vqa-rad"] and card["source"] == "VQA-RAD, hub:flaviagiammarino/vqa-rad"
    assert list(frame["split"]) == ["train", "test"] and list(frame["source"]) == [
        "hub:flaviagiammarino/vqa-rad/train#0", "hub:flaviagiammarino/vqa-rad/test#0"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"format": "slake"}, "format 'slake' needs a path: the folder holding train.json"),
        ({"format": "generic", "path": "rows.parquet"}, "needs path to be a .jsonl or .csv file"),
        ({"format": "vqa_rad", "path": "x", "group": "A"}, "group applies only to the starter format"),
        ({"format": "starter", "group": "A", "path": "x"}, "the starter format is built in"),
        ({"format": "pmc_vqa", "path": "x", "language": "zh"}, "language applies only to the slake format"),
        ({"format": "vqa_rad", "path": "x", "images": "imgs"}, "images does not apply to 'vqa_rad'"),
        ({"format": "slake", "path": "x", "split_files": {"dev": "dev.json", "language": "en"}}, "split_files names split 'dev'"),
        ({"format": "generic", "path": "x.csv", "split_files": {"train": "a.csv"}}, "split_files does not apply"),
    ],
)
def test_dataset_specs_are_checked_per_format(spec, message):
    with pytest.raises(ConfigError) as err:
        data_config({"x": spec})
    assert message in str(err.value) and "data.datasets.x" in str(err.value)


def test_data_options_are_checked():
    with pytest.raises(ConfigError, match="unseen_leakage must be 'error' or 'warn'"):
        data_config({"x": {"format": "starter", "group": "A"}}, unseen_leakage="ignore")
    with pytest.raises(ConfigError, match="max_quarantine_fraction must be between 0 and 1"):
        data_config({"x": {"format": "starter", "group": "A"}}, max_quarantine_fraction=1.5)
