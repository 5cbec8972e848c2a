"""Resumable training: a stage killed at any moment (SIGKILL included) continues from its last checkpoint.

A training stage writes Trainer checkpoints (weights, optimizer, scheduler, RNG and data position) under
`paths.checkpoints/<stage>/`, outside DVC's outputs (DVC deletes a stage's outputs before re-running it). The folder
is stamped with a fingerprint of everything the training depends on (its params and the bytes of its inputs); a
checkpoint is resumed only if the fingerprint matches, so a changed learning rate or a new SFT model never silently
continues an old run. The stage's MLflow run id is kept beside the checkpoints so that the resumed run logs into the
same MLflow run. When the stage finishes, the folder is removed: DVC then records the stage as done.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

FINGERPRINT = "fingerprint.json"
RUN_ID = "mlflow_run_id"


def fingerprint(params: dict, inputs: list[Path]) -> str:
    """sha256 over the params (as JSON) and the content of every input file (folders walked in sorted order)."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for root in inputs:
        files = sorted(p for p in Path(root).rglob("*") if p.is_file()) if Path(root).is_dir() else [Path(root)]
        for path in files:
            digest.update(str(path.relative_to(root) if path != root else path.name).encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def open_work_dir(work_dir: Path, stamp: str) -> Path:
    """Keep `work_dir` if it was written for the same fingerprint, else empty it and stamp it anew."""
    stamp_file = work_dir / FINGERPRINT
    if stamp_file.is_file() and json.loads(stamp_file.read_text()).get("fingerprint") == stamp:
        return work_dir
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    stamp_file.write_text(json.dumps({"fingerprint": stamp}))
    return work_dir


def wait_for_work_dir(work_dir: Path, stamp: str, timeout_s: float) -> Path:
    """On the other processes of a multi-process run: wait until rank 0 has opened `work_dir` for `stamp`.

    Only rank 0 empties and stamps the folder (open_work_dir); a rank that looked for a checkpoint before that could
    resume from a stale one while rank 0 starts afresh. Every rank computes the same fingerprint, so the stamp
    matching is the sign that the folder is ready (at once when rank 0 keeps it to resume).
    """
    stamp_file = work_dir / FINGERPRINT
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if json.loads(stamp_file.read_text()).get("fingerprint") == stamp:
                return work_dir
        except (OSError, ValueError):
            pass  # not there yet, or being written
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank 0 did not open {work_dir} for this run within {timeout_s:.0f} s")
        time.sleep(0.2)


def last_checkpoint(work_dir: Path) -> str | None:
    """The newest complete `checkpoint-<step>` folder (Trainer writes trainer_state.json last), or None."""
    steps = [
        (int(p.name.split("-")[1]), p)
        for p in Path(work_dir).glob("checkpoint-*")
        if p.name.split("-")[1].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return str(max(steps)[1]) if steps else None


def saved_run_id(work_dir: Path) -> str | None:
    path = Path(work_dir) / RUN_ID
    return path.read_text().strip() or None if path.is_file() else None


def save_run_id(work_dir: Path, run_id: str) -> None:
    (Path(work_dir) / RUN_ID).write_text(run_id)


def close_work_dir(work_dir: Path) -> None:
    """The stage finished and its outputs are in place: its checkpoints are no longer needed."""
    shutil.rmtree(work_dir, ignore_errors=True)
