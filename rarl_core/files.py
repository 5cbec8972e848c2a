"""Crash-safe writes: a file or folder appears complete or not at all.

Everything the pipeline writes goes to a temporary sibling first and is renamed into place, so a crash (or a
SIGKILL) never leaves an output that a later `dvc repro` or reader would mistake for finished work.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0o022)  # read once, at import (os.umask can only be read by setting it), and put back
os.umask(_UMASK)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder that replaces `path` only if the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def remove_stale_temps(path: Path) -> None:
    """Delete the temporary siblings of `path` left by writers that were killed (SIGKILL runs no clean-up): their
    name carries the writer's pid, and that process is gone. A live writer's folder is never touched."""
    prefix = f".{path.name}.tmp-"
    for sibling in path.parent.glob(f"{prefix}*"):
        pid = sibling.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(sibling, ignore_errors=True) if sibling.is_dir() else sibling.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            pass


@contextmanager
def atomic_file(path: str | Path, open_mode: str = "w") -> Iterator[Any]:
    """Open a temporary sibling of `path` for writing; rename it over `path` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, open_mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it 0600: give the file the mode open() would have
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def project_path(path: str | Path) -> Path:
    """A path of params.yaml that outlives one run (the MLflow store, the judge cache), made absolute.

    DVC sets DVC_ROOT for every stage command: the workspace root under `dvc repro`, and the *parent* repository's
    root when `dvc exp run --temp` (or the queue) runs the stage in a temporary copy. Resolving against it keeps every
    experiment using the project's one store instead of a throw-away copy; outside DVC it is the working directory.
    """
    path = Path(path).expanduser()
    return path if path.is_absolute() else (Path(os.environ.get("DVC_ROOT") or ".") / path).resolve()


def write_json(path: str | Path, data: Any) -> None:
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    with atomic_file(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, default=str) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    rows = []
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number}: not valid JSON ({err.msg}); fix or remove that line") from None
    return rows
