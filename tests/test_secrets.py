"""Secrets and PHI stay in: a whole pipeline run through the Prefect flow, then every store is searched.

The run (tests/flows/helpers.py: full_run) has sentinel API keys in its environment (OPENAI_API_KEY, HF_TOKEN,
ANTHROPIC_API_KEY), an LLM judge reached through LiteLLM on a local fake OpenAI server (so the key is really sent),
and an extra unseen dataset in the generic JSONL format whose images are DICOMs carrying sentinel patient
identifiers (name, id, other ids, institution, referring physician). Neither the keys nor the identifiers, nor the
identifiers of the bundled starter set's DICOMs, may appear in: MLflow (the SQLite store and every artifact), Prefect
(flow-run parameters, task runs, logs, artifacts, and the server's database file), DVC (dvc.lock, params.yaml, the
cache and run cache), reports/ (predictions, judge scores, metrics, report), the prepared data, the judge cache, or
anywhere else in the project folder but the user's own input files. The judge sees text only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.flows.helpers import (SECRETS, files_containing, full_run, prefect_db_file, prefect_records,
                                 records_containing)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    result = full_run(tmp_path_factory.mktemp("shared"))
    assert result["state"].is_completed(), result["state"].message
    return result


def stores(root: Path, prefect_db: Path | None) -> list[Path]:
    """Every file the pipeline, MLflow, DVC and Prefect wrote; not .git, not the user's input data/raw/, not the
    copy of this test suite (whose source holds the sentinels)."""
    roots = [p for p in root.iterdir() if p.name not in (".git", "data", "tests")]
    roots += [p for p in (root / "data").iterdir() if p.name != "raw"]
    if prefect_db is not None:
        roots += sorted(prefect_db.parent.glob(prefect_db.name + "*"))  # the database, its -wal and -shm
    return roots


def starter_identifiers() -> list[str]:
    """PatientName / PatientID of the bundled DICOMs the starter set is built from (long enough to be unique)."""
    import pydicom
    from pydicom.data import get_testdata_file

    source = (Path(__file__).resolve().parents[1] / "rarl_core" / "starter.py").read_text()
    values = set()
    for name in sorted(set(re.findall(r'"([\w.-]+\.dcm)"', source))):
        path = get_testdata_file(name, download=False)
        if path:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            values |= {str(ds.get(key, "")) for key in ("PatientName", "PatientID")}
    return sorted(v for v in values if len(v) >= 8)


def test_the_run_really_used_the_keys_and_the_dicoms(run):
    """Without this the searches below could pass vacuously."""
    assert f"Bearer {SECRETS['OPENAI_API_KEY']}" in run["fake"].auth_headers
    card = json.loads((run["root"] / "data" / "prepared" / "phi_set" / "card.json").read_text())
    assert card["by_split"] == {"test": 4} and card["images"] == 2, card
    assert (run["root"] / "reports" / "predictions" / "sft" / "phi_set").is_dir()
    # and the byte search does see what is stored in the databases (SQLite keeps text as is)
    prefect_db = prefect_db_file(run["prefect_db"])
    assert prefect_db is not None and prefect_db.is_file()
    flow_run_name = next(r.name for r in prefect_records()["flow_runs"]
                         if r.id == run["state"].state_details.flow_run_id)
    mlflow_db = run["root"] / "mlflow" / "mlflow.db"
    seen = files_containing([*sorted(prefect_db.parent.glob(prefect_db.name + "*")), mlflow_db],
                            [flow_run_name, "rarl.prefect.flow_run_id"])
    assert seen[flow_run_name] and seen["rarl.prefect.flow_run_id"], seen


def test_no_secret_in_any_store(run):
    needles = list(SECRETS.values())
    hits = files_containing(stores(run["root"], prefect_db_file(run["prefect_db"])), needles)
    assert not any(hits.values()), hits
    records = records_containing(prefect_records(), needles)
    assert not any(records.values()), records


def test_no_patient_identifier_in_any_store(run):
    needles = run["phi"] + starter_identifiers()
    assert "CompressedSamples^CT1" in needles  # the starter set's identifiers are searched too
    hits = files_containing(stores(run["root"], prefect_db_file(run["prefect_db"])), needles)
    assert not any(hits.values()), {k: v for k, v in hits.items() if v}
    records = records_containing(prefect_records(), needles)
    assert not any(records.values()), {k: v for k, v in records.items() if v}


def test_the_judge_sees_text_only(run):
    bodies = [json.dumps(r) for r in run["fake"].requests]
    assert bodies, "the judge made no call"
    assert not [b for b in bodies if "image_url" in b or "data:image" in b or "base64" in b]
