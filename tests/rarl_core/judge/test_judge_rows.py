"""Judging a whole file: config checks, bad inputs, summaries, import cost, secrets."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rarl_core.config import ConfigError, JudgeConfig, section_from_dict
from rarl_core.judge import judge_file, judge_rows, summarize_scores
from rarl_core.judge.redact import scrub
from tests.rarl_core.judge.conftest import judge_config

REPO = Path(__file__).resolve().parents[3]


BAD_CONFIGS = [
    ({"model": ""}, "model"),
    ({"api_base": "127.0.0.1:8000"}, "api_base"),
    ({"api_base": "http://127.0.0.1:8000/v1"}, "model is 'rubric'"),
    ({"concurrency": 0}, "concurrency"),
    ({"concurrency": 2.5}, "concurrency"),
    ({"concurrency": True}, "concurrency"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"max_retries": -1}, "max_retries"),
    ({"backoff_s": -1}, "backoff_s"),
    ({"temperature": 3}, "temperature"),
    ({"max_failure_rate": 1.5}, "max_failure_rate"),
    ({"cache_path": ""}, "cache_path"),
    ({"send_images": True}, "not supported yet"),
]


@pytest.mark.parametrize(("overrides", "reason"), BAD_CONFIGS)
def test_config_validation(overrides: dict, reason: str) -> None:
    """As params.yaml is loaded: types first (2.5 and True are not concurrencies), then the section's own checks."""
    with pytest.raises(ConfigError, match=re.escape(reason)):
        section_from_dict(JudgeConfig, {**dataclasses.asdict(judge_config()), **overrides}, "judge")


def test_config_help_unknown_and_missing_keys() -> None:
    shipped = dataclasses.asdict(judge_config())
    assert all(f.metadata.get("help") for f in dataclasses.fields(JudgeConfig))
    assert section_from_dict(JudgeConfig, {**shipped, "model": "gpt-4o-mini", "timeout_s": 30}, "judge").timeout_s == 30
    with pytest.raises(ConfigError, match="unknown key judge.concurency.*known keys here: api_base"):
        section_from_dict(JudgeConfig, {**shipped, "concurency": 2}, "judge")
    del shipped["timeout_s"]
    with pytest.raises(ConfigError, match="missing key judge.timeout_s"):
        section_from_dict(JudgeConfig, shipped, "judge")


def test_bad_rows_are_rejected_before_any_call() -> None:
    with pytest.raises(ValueError, match="lack one of"):
        judge_rows([{"id": 1, "question": "q", "answer": "a"}], judge_config(), progress=False)
    row = {"id": 1, "question": "q", "answer": "a", "completion": "c"}
    with pytest.raises(ValueError, match="duplicate prediction ids"):
        judge_rows([row, dict(row)], judge_config(), progress=False)


def test_predictions_with_broken_json_name_the_line(tmp_path: Path) -> None:
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"id": 1, "question": "q", "answer": "a", "completion": "c"}\n\n{broken\n')
    with pytest.raises(ValueError, match=r"p\.jsonl:3"):
        judge_file(preds, tmp_path / "s.jsonl", judge_config(), progress=False)
    assert not (tmp_path / "s.jsonl").exists()


def test_summarize_scores() -> None:
    scores = [
        {"id": 1, "correctness": 1.0, "reasoning": 2 / 3, "error": None},
        {"id": 2, "correctness": 0.0, "reasoning": 0.0, "error": None},
        {"id": 3, "correctness": None, "reasoning": None, "error": "timeout"},
    ]
    assert summarize_scores(scores) == {"mean_correctness": 0.5, "mean_reasoning": pytest.approx(1 / 3),
                                        "n_scored": 2, "n_errors": 1}
    assert summarize_scores([])["mean_correctness"] is None


def test_scrub_removes_key_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_PROVIDER_API_KEY", "abcdefgh12345678")
    text = scrub("key abcdefgh12345678, bearer: Bearer xyz.123, sk-live-ABCDEFGH12345")
    assert "abcdefgh12345678" not in text and "xyz.123" not in text and "sk-live" not in text


def test_importing_judge_does_not_import_litellm() -> None:
    code = "import sys, rarl_core.judge; assert 'litellm' not in sys.modules and 'openai' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_judge_family_and_length_correlation(tmp_path):
    from rarl_core.judge import length_correlation, model_family

    (tmp_path / "config.json").write_text('{"model_type": "qwen2_vl"}')
    assert model_family(str(tmp_path)) == "qwen" == model_family("openai/Qwen2.5-72B-Instruct")
    assert model_family("gpt-4o-mini") == "gpt" and model_family("google/medgemma-4b-it") == "gemma"
    assert model_family("rubric") is None
    rows = [{"completion_tokens": n} for n in (5, 10, 20, 40)]
    longer_is_better = [{"correctness": c, "reasoning": 0.5} for c in (0.0, 1 / 3, 2 / 3, 1.0)]
    r = length_correlation(rows, longer_is_better)
    assert r["correctness"] == pytest.approx(1.0) and r["reasoning"] is None  # no variation: no correlation
