"""Run DVC in a child process and follow it stage by stage: logs, time limits, a clear message when a stage fails.

Used by the flows for both ways a pipeline runs (see flows/pipeline.py):
* `dvc repro --single-item <stage>`: one stage in the project's workspace;
* `dvc exp run --temp ...`: a whole DVC experiment in a temporary copy of the project.

DVC announces each stage ("Running stage 'sft':", "Stage 'prepare' didn't change, skipping", "Stage 'x' is cached -
skipping run, checking out outputs"); this module turns those lines into per-stage outcomes, enforces each stage's
time limit (killing the whole process group, DVC's stage command included), and on failure names the stage with the
last error line it printed, which is what the Prefect UI shows as the run's failure message.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flows.params import stage_base

RUNNING = re.compile(r"^Running stage '([^']+)'")
UNCHANGED = re.compile(r"^Stage '([^']+)' didn't change, skipping")
RESTORED = re.compile(r"^Stage '([^']+)' is cached - skipping run")
FAILED = re.compile(r"failed to reproduce '([^']+)'")
EXITED = re.compile(r"exited with (-?\d+)")
PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar
ERROR_LINE = re.compile(r"(^error\b|^ERROR\b|Error:|Exception:|^Killed|Traceback)", re.IGNORECASE)


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
    status: str  # ran | unchanged | restored | failed | timed out
    seconds: float = 0.0


@dataclass
class DvcRun:
    """What one DVC invocation did, stage by stage."""

    outcomes: dict[str, StageOutcome] = field(default_factory=dict)
    returncode: int | None = None
    tail: deque = field(default_factory=lambda: deque(maxlen=60))


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


def run_dvc(
    args: list[str],
    cwd: Path,
    env: dict[str, str],
    log: Callable[[str], None],
    timeout_for: Callable[[str], float],
    retryable: Callable[[str], bool],
    first_stage: str | None = None,
) -> DvcRun:
    """Run `dvc <args>`; raise StageFailed naming the stage on failure or time-out. `first_stage` is the stage
    running from the start (a single-item repro, whose "Running stage" line comes only after DVC's checks)."""
    import sys

    cmd = [sys.executable, "-m", "dvc", "--wait-for-lock", *args]
    log(f"$ dvc {' '.join(args)}")
    result = DvcRun()
    lines: queue.Queue[str | None] = queue.Queue()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
        start_new_session=True,  # its own process group: a time-out or a cancelled flow stops the stage command too
    )

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True, name="dvc-output").start()
    current, started = first_stage, time.monotonic()
    failed: str | None = None
    try:
        while True:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                line = ""
            if line is None:
                break
            now = time.monotonic()
            if current and now - started > timeout_for(current):
                limit = timeout_for(current)
                result.outcomes[current] = StageOutcome(current, "timed out", now - started)
                _kill_group(proc)
                raise StageFailed(
                    current,
                    f"stage {current} ran longer than its time limit ({limit:.0f} s) and was stopped. Raise "
                    f"timeouts_s.{stage_base(current)} in the run's parameters if it needs longer; its checkpoints "
                    f"(training stages) are kept, so a re-run continues from the last one.",
                    timed_out=True,
                )
            line = line.rstrip()
            if not line.strip():
                continue
            if m := RUNNING.match(line):
                if m.group(1) != current:
                    _finish(result, current, started, now)
                    current, started = m.group(1), now
                result.outcomes[current] = StageOutcome(current, "running")
                log(f"stage {current}: running")
                continue
            for pattern, status in ((UNCHANGED, "unchanged"), (RESTORED, "restored")):
                if m := pattern.match(line):
                    _finish(result, current, started, now)
                    result.outcomes[m.group(1)] = StageOutcome(m.group(1), status)
                    log(f"stage {m.group(1)}: {'up to date, skipped' if status == 'unchanged' else 'restored from DVC run cache'}")
                    current = None
                    break
            else:
                if m := FAILED.search(line):
                    failed = m.group(1)
                if PROGRESS.search(line) and "100%|" not in line:
                    continue  # progress bars: the final 100% line is enough
                result.tail.append(line)
                log(line)
        result.returncode = proc.wait()
    finally:
        _kill_group(proc)  # flow cancelled or crashed here: leave no stage behind
    now = time.monotonic()
    if result.returncode == 0:
        _finish(result, current, started, now)
        return result
    stage = failed or current
    if stage:
        result.outcomes[stage] = StageOutcome(stage, "failed", now - started)
    raise StageFailed(stage, failure_message(stage, result), retryable=bool(stage) and retryable(stage))


def _finish(result: DvcRun, current: str | None, started: float, now: float) -> None:
    if current and (current not in result.outcomes or result.outcomes[current].status == "running"):
        result.outcomes[current] = StageOutcome(current, "ran", now - started)


def failure_message(stage: str | None, result: DvcRun) -> str:
    """`stage X failed (exit N): <its last error line>`: what the Prefect UI shows for the failed run."""
    errors = [line for line in result.tail if ERROR_LINE.search(line) and "failed to reproduce" not in line]
    cause = errors[-1].strip() if errors else (result.tail[-1].strip() if result.tail else "no output")
    exited = [m for line in result.tail if (m := EXITED.search(line))]
    if exited and int(exited[-1].group(1)) < 0:
        number = -int(exited[-1].group(1))
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        cause = (f"its process was killed by signal {number} ({name}"
                 f"{': often the out-of-memory killer' if number == signal.SIGKILL else ''})")
    what = f"stage {stage}" if stage else "dvc"
    return (
        f"{what} failed (exit {result.returncode}): {cause[:500]}. The full output is in this task's log. Fix the "
        f"cause and run the deployment again with the same parameters: finished stages are not redone."
    )
