"""Finished judge verdicts in SQLite: a finished evaluation re-runs with zero calls, an interrupted one resumes.

Keyed by (model, PROMPT_VERSION, question, reference, completion). The key leaves out ``api_base`` (the same model
served elsewhere is the same judge) and ``temperature``; bump PROMPT_VERSION when the prompt changes. Errors are
never cached, so a rerun retries exactly the rows that failed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from rarl_core.judge import prompt
from rarl_core.judge.prompt import JudgeScore


def cache_key(model: str, question: str, reference: str, completion: str) -> str:
    """sha256 of what determines a verdict."""
    payload = json.dumps([model, prompt.PROMPT_VERSION, str(question), str(reference), str(completion)],
                         ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ScoreCache:
    """Finished verdicts, committed one by one so an interrupted run loses at most the calls in flight."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: judge_rows may run its event loop in a helper thread (see run_coroutine);
        # the connection is still used by one thread at a time.
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # a commit per scored row (an interrupted run loses nothing), without an fsync each: in WAL mode a crash of
        # the process loses nothing either; only a power cut may drop the last rows, which are then scored again
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS judge_scores (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
            "prompt_version TEXT NOT NULL, correctness REAL NOT NULL, reasoning REAL NOT NULL, "
            "rationale TEXT NOT NULL, created_at REAL NOT NULL)"
        )
        self._db.commit()

    def get_many(self, keys: Iterable[str]) -> dict[str, JudgeScore]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, JudgeScore] = {}
        for start in range(0, len(wanted), 500):  # stay under sqlite's bound-variable limit
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, correctness, reasoning, rationale FROM judge_scores WHERE key IN ({marks})", chunk
            )
            found.update({k: JudgeScore(c, r, why) for k, c, r, why in rows})
        return found

    def put(self, key: str, model: str, score: JudgeScore) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO judge_scores VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, model, prompt.PROMPT_VERSION, score.correctness, score.reasoning, score.rationale, time.time()),
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()
