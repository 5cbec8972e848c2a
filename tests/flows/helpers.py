"""Shared by the operations tests (flows, faults, secrets, browser): a tiny project, Prefect's test harness, searches.

TINY shrinks the pipeline further than conftest.SMALL (one GRPO variant, a few steps, four questions): these tests
check operations (isolation, faults, leaks), not learning, and each must stay well under two minutes on two busy cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import QUICK_VISION_PRETRAIN, copy_project, small_params, venv_env

TINY = {
    "sft": {"max_steps": 8, "batch_size": 4, "logging_steps": 2, "save_steps": 2},
    "grpo": {"max_steps": 2, "batch_size": 4, "num_generations": 2, "max_completion_length": 8, "logging_steps": 1,
             "save_steps": 1, "variants": {"rl": {"format": 1.0, "accuracy": 1.0, "reasoning": 0.0}}},
    "evaluate": {"max_questions": 4, "batch_size": 4, "max_new_tokens": 8, "image_controls": []},
    "augment": {"variants_per_question": 1},
    "tiny_model": {"vision_pretrain": {**QUICK_VISION_PRETRAIN, "steps": 10, "images": 64}},
}

GIT = ["git", "-c", "user.email=t@rarl.local", "-c", "user.name=rarl tests"]


def tiny_project(root: Path, **overrides: dict) -> Path:
    """A git copy of the project with TINY params (relative paths, as shipped), committed."""
    root.mkdir(parents=True, exist_ok=True)
    copy_project(root)
    merged = {section: dict(values) for section, values in TINY.items()}
    for section, values in overrides.items():
        merged.setdefault(section, {}).update(values)
    known = {k for k in merged if k in _shipped_sections()}
    small_params(root, absolute_paths=False, **{k: v for k, v in merged.items() if k in known})
    subprocess.run([*GIT, "commit", "-qam", "tiny params"], cwd=root, check=True)
    return root


def _shipped_sections() -> set[str]:
    import yaml

    return set(yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text()))


def dvc(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=venv_env(), capture_output=True,
                          text=True, check=check)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def harness() -> Iterator[None]:
    """Prefect's test harness (a temporary server and database), with the project's interpreter first on PATH."""
    from prefect.testing.utilities import prefect_test_harness

    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = venv_env()["PATH"]
    try:
        with prefect_test_harness(server_startup_timeout=180):
            yield
    finally:
        os.environ["PATH"] = old_path


_HARNESS: contextlib.ExitStack | None = None


def session_harness() -> str:
    """Enter Prefect's test harness once for the whole test session (one temporary server for every flow test:
    starting one costs 10-20 s here); returns its API URL, for flow runs started in other processes."""
    global _HARNESS
    if _HARNESS is None:
        import atexit

        _HARNESS = contextlib.ExitStack()
        _HARNESS.enter_context(harness())
        atexit.register(_HARNESS.close)
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def launch_flow(kind: str, params: dict, root: Path, log: Path, env: dict | None = None) -> subprocess.Popen:
    """A flow run in its own process, as a worker starts one, reporting to the session harness's server."""
    repo = Path(__file__).resolve().parents[2]
    module = {"train": "pipeline"}.get(kind, kind)  # flows/evaluate.py:evaluate, flows/compare.py:compare
    code = (f"from flows.{module} import {kind}; import json, sys; "
            f"s = {kind}(params=json.loads(sys.argv[1]), project_dir=sys.argv[2], return_state=True); "
            f"print('STATE', s.type.value, s.message); sys.exit(0 if s.is_completed() else 1)")
    full_env = {**venv_env(), **(env or {}), "PREFECT_API_URL": session_harness(), "PYTHONPATH": str(repo)}
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(params), str(root)], cwd=repo, env=full_env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def flow_outcomes(flow_run_id) -> dict[str, str]:
    """{stage: ran | unchanged | restored | failed} from a flow run's `rarl-stages` table artifact."""
    for artifact in prefect_records()["artifacts"]:
        if artifact.key == "rarl-stages" and artifact.flow_run_id == flow_run_id:
            rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
            return {row["stage"]: row["outcome"] for row in rows}
    return {}


def prefect_records() -> dict[str, list]:
    """Everything the Prefect server holds about runs: flow runs (with parameters), task runs, logs, artifacts."""
    from prefect.client.orchestration import get_client

    async def read() -> dict[str, list]:
        async with get_client() as client:
            return {
                "flow_runs": await client.read_flow_runs(),
                "task_runs": await client.read_task_runs(),
                "logs": await client.read_logs(),
                "artifacts": await client.read_artifacts(),
            }

    return asyncio.run(read())


def mlflow_db(root: Path) -> Path:
    return root / "mlflow" / "mlflow.db"


def mlflow_runs(root: Path) -> list[dict]:
    """Every MLflow run of the project's store: name, status, tags."""
    with contextlib.closing(sqlite3.connect(mlflow_db(root))) as db:
        runs = db.execute("select run_uuid, name, status from runs").fetchall()
        tags = db.execute("select run_uuid, key, value from tags").fetchall()
    by_run: dict[str, dict] = {r[0]: {"id": r[0], "name": r[1], "status": r[2], "tags": {}} for r in runs}
    for run_id, key, value in tags:
        if run_id in by_run:
            by_run[run_id]["tags"][key] = value
    return list(by_run.values())


def files_containing(roots: list[Path], needles: list[str]) -> dict[str, list[str]]:
    """{needle: [files whose bytes contain it]} over every file under `roots` (SQLite files and WAL included)."""
    encoded = {n: n.encode() for n in needles}
    hits: dict[str, list[str]] = {n: [] for n in needles}
    for root in roots:
        paths = [root] if root.is_file() else (p for p in root.rglob("*") if p.is_file())
        for path in paths:
            try:
                data = path.read_bytes()
            except OSError:
                continue
            for needle, raw in encoded.items():
                if raw in data:
                    hits[needle].append(str(path))
    return hits


def records_containing(records: dict[str, list], needles: list[str]) -> dict[str, list[str]]:
    """{needle: [where in the Prefect records it appears]}."""
    hits: dict[str, list[str]] = {n: [] for n in needles}
    for kind, items in records.items():
        for item in items:
            text = json.dumps(item.model_dump(mode="json"), default=str)
            for needle in needles:
                if needle in text:
                    hits[needle].append(f"{kind}:{getattr(item, 'id', '?')}")
    return hits


# ----------------------------------------------------------------------------------------------------------------
# Chromium (Debian's package), installed when missing
# ----------------------------------------------------------------------------------------------------------------


def ensure_chromium() -> str | None:
    """Chromium's path, installing Debian's `chromium` with apt when it is missing (CI runs as root with apt).
    None when it cannot be installed here (no apt, not root, or apt failed)."""
    import shutil

    from flows.browser import find_chromium

    if path := find_chromium():
        return path
    if not shutil.which("apt-get") or os.geteuid() != 0:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    if subprocess.run(install, env=env, capture_output=True).returncode:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True)
    return find_chromium()


# ----------------------------------------------------------------------------------------------------------------
# One full pipeline run through the flow, shared by the tests of this session that need one
# ----------------------------------------------------------------------------------------------------------------

SECRETS = {
    "OPENAI_API_KEY": "sk-SENTINEL-openai-7f3a9c0d1e2b4a68",
    "HF_TOKEN": "hf_SENTINELhuggingface7f3a9c0d1e2b",
    "ANTHROPIC_API_KEY": "sk-ant-SENTINEL-7f3a9c0d1e2b",
}
PHI = {"PatientName": "Sentinelname^Phiperson^Q7X2K", "PatientID": "PHI-ID-Q7X2K9", "OtherPatientIDs": "MRN-Q7X2K9",
       "InstitutionName": "Sentinel General Hospital Q7X2K", "ReferringPhysicianName": "Sentineldoc^Q7X2K"}
_FULL_RUN: dict | None = None


def phi_dataset(root: Path) -> list[str]:
    """data/raw/phi/: a generic JSONL dataset whose images are DICOMs carrying sentinel identifiers (PHI), from
    pydicom's bundled liver CT and colour ultrasound. Returns the sentinel strings."""
    import pydicom
    from pydicom.data import get_testdata_file

    folder = root / "data" / "raw" / "phi"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (source, organ, modality) in enumerate([("liver_1frame.dcm", "liver", "ct"),
                                                   ("examples_rgb_color.dcm", "abdomen", "ultrasound")]):
        ds = pydicom.dcmread(get_testdata_file(source))
        for key, value in PHI.items():
            setattr(ds, key, value)
        ds.save_as(folder / f"scan{i}.dcm")
        rows += [
            {"image": f"scan{i}.dcm", "question": f"Is this a {modality} image?", "answer": "yes", "split": "test",
             "id": f"phi-{i}-a"},
            {"image": f"scan{i}.dcm", "question": "What organ is shown?", "answer": organ, "split": "test",
             "id": f"phi-{i}-b"},
        ]
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return list(PHI.values())


def full_run(base: Path) -> dict:
    """The tiny pipeline through the `rarl` flow, in the project's workspace, once per test session.

    Under Prefect's test harness (kept for the session), with sentinel API keys in the environment, the LLM judge
    (`openai/fake`) served by tests/fake_openai.py on 127.0.0.1 (so the key is really sent, and must go nowhere
    else), and an extra unseen dataset of DICOMs carrying sentinel patient identifiers. Returns the project root,
    the flow's final state, the fake judge server and the harness's database URL.
    """
    global _FULL_RUN
    if _FULL_RUN is not None:
        return _FULL_RUN
    import atexit

    from tests.fake_openai import FakeOpenAI

    chromium = ensure_chromium()
    fake = FakeOpenAI().start()
    atexit.register(fake.stop)
    root = base / "full-run"
    root.mkdir(parents=True, exist_ok=True)
    copy_project(root)
    phi = phi_dataset(root)
    import yaml

    shipped = yaml.safe_load((root / "params.yaml").read_text())
    datasets = {**shipped["data"]["datasets"], "phi_set": {"format": "generic", "path": "data/raw/phi/rows.jsonl"}}
    small_params(root, absolute_paths=False, **TINY,
                 data={"datasets": datasets, "unseen": [*shipped["data"]["unseen"], "phi_set"]},
                 judge={"model": "openai/fake", "api_base": fake.base_url, "max_retries": 1, "backoff_s": 0.01,
                        "timeout_s": 20.0, "concurrency": 4})
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "tiny params, PHI dataset, fake judge"], cwd=root, check=True)

    session_harness()
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_API_URL

    from flows.params import RunParameters
    from flows.pipeline import train

    saved = {key: os.environ.get(key) for key in SECRETS}
    os.environ.update(SECRETS)
    try:
        state = train(params=RunParameters(), project_dir=str(root), return_state=True)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.chdir(Path(__file__).resolve().parents[2])
    _FULL_RUN = {
        "root": root, "state": state, "fake": fake, "phi": phi, "chromium": chromium,
        "api_url": PREFECT_API_URL.value(), "prefect_db": PREFECT_API_DATABASE_CONNECTION_URL.value(),
    }
    return _FULL_RUN


def prefect_db_file(url: str | None) -> Path | None:
    """The SQLite file behind a Prefect database URL (sqlite+aiosqlite:////path/prefect.db)."""
    if not url or "sqlite" not in url:
        return None
    return Path(url.split(":///", 1)[1])
