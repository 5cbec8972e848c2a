"""Fixtures of the judge tests: a scripted local OpenAI-compatible server and rows it can route one by one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rarl_core.config import JudgeConfig
from tests.conftest import shipped_config
from tests.fake_openai import FakeOpenAI

SENTINEL = "sk-test-SENTINEL-7f3a9c0d1e2b4a68"


def judge_config(**overrides) -> JudgeConfig:
    """The shipped judge: section with `overrides` applied (validated like params.yaml)."""
    return dataclasses.replace(shipped_config().judge, **overrides)


@pytest.fixture()
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    return SENTINEL


@pytest.fixture()
def server(api_key: str):
    srv = FakeOpenAI().start()
    yield srv
    srv.stop()


def make_cfg(srv: FakeOpenAI, tmp_path: Path, **overrides) -> JudgeConfig:
    settings = dict(model="openai/fake", api_base=srv.base_url, concurrency=4, timeout_s=5.0, max_retries=2,
                    backoff_s=0.01, cache_path=str(tmp_path / "cache" / "judge.sqlite"))
    settings.update(overrides)
    return judge_config(**settings)


def make_rows(n: int, start: int = 0) -> list[dict]:
    """Rows whose completion carries a unique marker ROWnnn, so the server can script each row separately."""
    return [
        {
            "id": f"r{i}",
            "question": "Is there a lesion in the liver?",
            "answer": "yes",
            "completion": f"<think>The liver shows a hypodense lesion.</think><answer>yes</answer> ROW{i:03d}",
        }
        for i in range(start, start + n)
    ]
