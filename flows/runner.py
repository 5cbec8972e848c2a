"""Run DVC in a child process and follow it stage by stage through machine-readable records, never its log text.

Used by the flows for both ways a pipeline runs (see flows/pipeline.py):
* `dvc repro --single-item <stage>`: one stage in the project's workspace (or a worker's checkout);
* `dvc exp run --temp ...`: a whole DVC experiment in a temporary copy of the project.

What each stage did comes from two records: every stage command (tasks/common.py `stage_main`) appends "start",
"ran", "failed" (with its message) or "timed out" to the JSON-lines file named in RARL_STAGE_EVENTS, keyed by the
stage name DVC gives it (DVC_STAGE); a stage DVC did not run is "unchanged" when its dvc.lock entry is the same as
before and "restored" when the entry changed (DVC's run cache checked its outputs out). A stage with a "start" and
no end died without a word (a signal: SIGKILL, often the out-of-memory killer). Each stage stops itself past its
time limit (RARL_STAGE_TIMEOUTS); this module also kills DVC's whole process group past the sum of the limits, and
when the flow is cancelled, so nothing is left running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from flows.params import stage_base

PROGRESS_MARK = "%|"  # a tqdm bar: only its final 100% line is logged
LOCKS = ("dvc.lock", "compare/dvc.lock")  # every pipeline file's lock; stage names are qualified as DVC addresses


class StageFailed(RuntimeError):
    """A stage failed or ran out of time. `stage` names it; `retryable` is true for network stages."""

    def __init__(self, stage: str | None, message: str, retryable: bool = False, timed_out: bool = False):
        super().__init__(message)
        self.stage = stage
        self.retryable = retryable
        self.timed_out = timed_out


@dataclass
class StageOutcome:
    stage: str
    status: str  # ran | unchanged | restored | failed | timed out | killed
    seconds: float = 0.0
    message: str = ""


@dataclass
class DvcRun:
    """What one DVC invocation did, stage by stage."""

    outcomes: dict[str, StageOutcome] = field(default_factory=dict)
    returncode: int | None = None
    tail: deque = field(default_factory=lambda: deque(maxlen=60))


def lock_entries(read: Callable[[str], str | None]) -> dict[str, dict]:
    """Every stage entry of the project's dvc.lock files, by DVC address (grpo@rl, compare/dvc.yaml:compare)."""
    entries = {}
    for lock in LOCKS:
        text = read(lock)
        prefix = "" if lock == "dvc.lock" else f"{lock.removesuffix('dvc.lock')}dvc.yaml:"
        for name, entry in ((yaml.safe_load(text) or {}).get("stages", {}) if text else {}).items():
            entries[f"{prefix}{name}"] = entry
    return entries


def workspace_locks(root: Path) -> Callable[[str], str | None]:
    return lambda lock: (root / lock).read_text() if (root / lock).is_file() else None


def read_events(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def outcomes_of(events: list[dict], before: dict[str, dict], after: dict[str, dict],
                planned: list[str]) -> dict[str, StageOutcome]:
    """Each stage's outcome: from its own records when it ran, from dvc.lock when DVC skipped or restored it."""
    outcomes: dict[str, StageOutcome] = {}
    started: dict[str, float] = {}
    for event in events:
        stage, kind = event["stage"], event["event"]
        if kind == "start":
            started.setdefault(stage, event["time"])
            outcomes[stage] = StageOutcome(stage, "killed", message="its process ended without a word: killed by a "
                                           "signal (SIGKILL, often the out-of-memory killer)")
        else:
            outcomes[stage] = StageOutcome(stage, kind, event["time"] - started.get(stage, event["time"]),
                                           event.get("message", ""))
    for stage in planned:
        if stage not in outcomes:
            outcomes[stage] = StageOutcome(stage, "unchanged" if before.get(stage) == after.get(stage) else "restored")
    return outcomes


def _kill_group(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM the child's process group (DVC and the stage command it started), then SIGKILL what is left."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_dvc(args: list[str], cwd: Path, env: dict[str, str], log: Callable[[str], None], planned: list[str],
            timeout_for: Callable[[str], float], retryable: Callable[[str], bool],
            locks_after: Callable[[str], str | None] | None = None) -> DvcRun:
    """Run `dvc <args>` for the stages `planned`; raise StageFailed naming the stage on failure or time-out.

    `locks_after` reads the dvc.lock files the run leaves (an experiment's commit); default: the workspace's."""
    before = lock_entries(workspace_locks(cwd))
    result = DvcRun()
    with tempfile.TemporaryDirectory(prefix="rarl-stages-") as tmp:
        events = Path(tmp) / "events.jsonl"
        limits = {stage: timeout_for(stage) for stage in planned}
        env = {**env, "RARL_STAGE_EVENTS": str(events), "RARL_STAGE_TIMEOUTS": json.dumps(limits)}
        cmd = [sys.executable, "-m", "dvc", "--wait-for-lock", *args]
        log(f"$ dvc {' '.join(args)}")
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", start_new_session=True)  # its own group: stopped whole
        backstop = threading.Timer(sum(limits.values()) + 120, _kill_group, (proc,))
        backstop.daemon = True
        backstop.start()
        try:
            for line in proc.stdout:  # shown in the Prefect log as it comes; never parsed
                line = line.rstrip()
                if line.strip() and (PROGRESS_MARK not in line or "100%|" in line):
                    result.tail.append(line)
                    log(line)
            result.returncode = proc.wait()
        finally:
            backstop.cancel()
            _kill_group(proc)  # flow cancelled or crashed here: leave no stage behind
        after = lock_entries(locks_after or workspace_locks(cwd)) if result.returncode == 0 else before
        result.outcomes = outcomes_of(read_events(events), before, after, planned)
    for outcome in result.outcomes.values():
        log(f"stage {outcome.stage}: {outcome.status}")
    if result.returncode == 0:
        return result
    failed = next((o for o in result.outcomes.values() if o.status in ("failed", "timed out", "killed")), None)
    stage = failed.stage if failed else None
    raise StageFailed(stage, failure_message(failed, result, timeout_for), retryable=bool(stage) and retryable(stage),
                      timed_out=bool(failed) and failed.status == "timed out")


def failure_message(failed: StageOutcome | None, result: DvcRun, timeout_for: Callable[[str], float]) -> str:
    """`stage X failed: <its own message>`: what the Prefect UI shows for the failed run."""
    if failed is None:  # DVC itself failed before any stage (a lock, a missing dependency): its last line says why
        cause = result.tail[-1].strip() if result.tail else "no output"
        return f"dvc failed (exit {result.returncode}) before any stage ran: {cause[:500]}"
    if failed.status == "timed out":
        return (f"stage {failed.stage} ran longer than its time limit ({timeout_for(failed.stage):.0f} s) and was "
                f"stopped. Raise timeouts_s.{stage_base(failed.stage)} in the run's parameters if it needs longer; "
                f"its checkpoints (training stages) are kept, so a re-run continues from the last one.")
    return (f"stage {failed.stage} {'failed' if failed.status == 'failed' else 'was killed'}: "
            f"{failed.message[:500]}. The full output is in this task's log. Fix the cause and run the deployment "
            f"again with the same parameters: finished stages are not redone.")
