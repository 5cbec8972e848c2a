"""A committed dvc.lock must match the committed code: every code file a recorded stage depends on has the md5 the
lock says. Otherwise a teammate's `dvc status` after a fresh clone reports the stage as changed, and the committed
results (reports/, the comparison) were produced by other code than the one shipped.

Reads the locks as committed (`git show HEAD:<lock>`), since the quick start rewrites dvc.lock in the working copy.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LOCKS = ("dvc.lock", "compare/dvc.lock")
CODE = ("rarl_core/", "tasks/", "flows/", "rarl/")


def committed(path: str) -> str | None:
    try:
        return subprocess.run(["git", "show", f"HEAD:{path}"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


def stale_code_deps(lock_text: str, root: Path) -> list[str]:
    """`<stage>: <file>` for every code dep whose recorded md5 differs from the file's (or whose file is gone)."""
    stale = []
    for stage, entry in (yaml.safe_load(lock_text) or {}).get("stages", {}).items():
        for dep in entry.get("deps", []):
            if not dep["path"].startswith(CODE):
                continue
            path = root / dep["path"]
            md5 = hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else "missing"
            if md5 != dep.get("md5"):
                stale.append(f"{stage}: {dep['path']}")
    return stale


@pytest.mark.parametrize("lock", LOCKS)
def test_committed_lock_matches_committed_code(lock):
    text = committed(lock)
    if text is None:
        pytest.skip(f"{lock} is not committed here (no git, or not recorded yet)")
    wdir = REPO / Path(lock).parent  # compare/dvc.yaml runs with wdir .. : its paths are relative to the root
    stale = stale_code_deps(text, REPO if lock.startswith("compare/") else wdir)
    assert not stale, (f"{lock} was recorded with other code than the committed one; re-run those stages "
                       f"(`dvc repro` / `rarl compare`) and commit the lock: {stale}")


def test_a_stale_lock_is_found(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "x.py").write_text("print(1)\n")
    lock = {"stages": {"x": {"deps": [{"path": "tasks/x.py", "md5": hashlib.md5(b"print(1)\n").hexdigest()},
                                      {"path": "data/in", "md5": "whatever"}]}}}
    assert stale_code_deps(yaml.safe_dump(lock), tmp_path) == []
    (tmp_path / "tasks" / "x.py").write_text("print(2)\n")
    assert stale_code_deps(yaml.safe_dump(lock), tmp_path) == ["x: tasks/x.py"]
