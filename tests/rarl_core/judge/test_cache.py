"""The judge cache: keyed by what determines a verdict; finished rows cost no call again, errors are retried."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI
from tests.rarl_core.judge.conftest import make_cfg, make_rows

from rarl_core.judge import judge_rows, prompt
from rarl_core.judge.cache import cache_key


def test_cache_key_covers_prompt_version_and_model(monkeypatch: pytest.MonkeyPatch) -> None:
    base = cache_key("openai/fake", "q", "a", "c")
    assert base != cache_key("openai/other", "q", "a", "c") != cache_key("openai/fake", "q", "a", "c2")
    monkeypatch.setattr(prompt, "PROMPT_VERSION", prompt.PROMPT_VERSION + "-next")
    assert cache_key("openai/fake", "q", "a", "c") != base


def test_interrupted_run_resumes(server: FakeOpenAI, tmp_path: Path) -> None:
    rows = make_rows(8)
    judge_rows(rows[:4], make_cfg(server, tmp_path), progress=False)  # "interrupted" after half the rows
    run = judge_rows(rows, make_cfg(server, tmp_path), progress=False)
    assert (run.calls, run.cache_hits, run.errors) == (4, 4, 0)
    assert [server.count_for(f"ROW{i:03d}") for i in range(8)] == [1] * 8
