"""`rarl judge PREDICTIONS --out SCORES` (rarl/cli.py): the params.yaml judge section, flag overrides, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from rarl.cli import judge_main as main  # noqa: E402
from tests.fake_openai import FakeOpenAI, good  # noqa: E402

SENTINEL = "sk-test-SENTINEL-cli-0123456789"


def write_predictions(path: Path, n: int) -> None:
    rows = [{"id": f"p{i}", "question": "Is the kidney enlarged?", "answer": "no",
             "completion": f"<think>The kidney has normal size, not enlarged.</think><answer>No</answer> ROW{i:03d}"}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_params(path: Path, judge_section: str) -> None:
    """A params file whose judge: section is the shipped one with `judge_section`'s lines in place (YAML)."""
    import yaml

    shipped = yaml.safe_load((REPO / "params.yaml").read_text())["judge"]
    changes = yaml.safe_load("judge:\n" + judge_section)["judge"] if judge_section else {}
    section = {**shipped, **changes} if isinstance(changes, dict) else changes
    path.write_text(yaml.safe_dump({"judge": section}))


def test_cli_subprocess_against_fake_server(tmp_path: Path) -> None:
    write_predictions(tmp_path / "preds.jsonl", 5)
    write_params(tmp_path / "params.yaml", f"  model: rubric\n  concurrency: 2\n  max_retries: 1\n  backoff_s: 0.01\n"
                                           f"  timeout_s: 10\n  cache_path: {tmp_path / 'c' / 'judge.sqlite'}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": SENTINEL}
    cmd = [sys.executable, "-m", "rarl.cli", "judge", "preds.jsonl", "--out", "out/scores.jsonl",
           "--params", "params.yaml", "--model", "openai/fake"]
    with FakeOpenAI(default=good(3, 2, "fine"), delay_s=0.05) as srv:
        proc = subprocess.run(cmd + ["--api-base", srv.base_url], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert srv.count == 5 and srv.max_in_flight <= 2  # concurrency came from params.yaml
        again = subprocess.run(cmd + ["--api-base", srv.base_url], cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=120)
        assert again.returncode == 0 and srv.count == 5  # all cached
    scores = [json.loads(line) for line in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    assert [s["id"] for s in scores] == [f"p{i}" for i in range(5)]
    assert {s["judge"] for s in scores} == {"openai/fake"} and all(s["correctness"] == 1.0 for s in scores)
    assert "5 scored, 0 errors" in proc.stdout and "5 calls" in proc.stdout
    assert "0 calls, 5 cache hits" in again.stdout
    assert SENTINEL not in proc.stdout + proc.stderr + again.stdout + again.stderr


def test_cli_default_is_offline_rubric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # the project's params.yaml, as shipped: the offline rubric judge
    write_params(tmp_path / "params.yaml", "")
    write_predictions(tmp_path / "preds.jsonl", 3)
    assert main(["preds.jsonl", "--out", "scores.jsonl"]) == 0
    scores = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert [(s["judge"], s["correctness"], s["reasoning"]) for s in scores] == [("rubric (offline)", 1.0, 1.0)] * 3
    assert "judge [rubric (offline)]: 3 scored" in capsys.readouterr().out


def test_cli_rejects_unknown_params_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_predictions(tmp_path / "preds.jsonl", 1)
    write_params(tmp_path / "params.yaml", "  concurency: 4\n")
    rc = main([str(tmp_path / "preds.jsonl"), "--out", str(tmp_path / "s.jsonl"), "--params",
               str(tmp_path / "params.yaml")])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown key judge.concurency" in err and "known keys here: api_base" in err
    assert not (tmp_path / "s.jsonl").exists()


@pytest.mark.parametrize(
    ("section", "flags", "message"),
    [
        ("  timeout_s: -1\n", [], "timeout_s must be > 0"),
        ("  send_images: true\n", [], "not supported yet"),
        ("", ["--api-base", "http://127.0.0.1:9/v1"], "model is 'rubric'"),
        ("  - a list\n", [], "judge must be a mapping"),
    ],
)
def test_cli_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str,
                                  flags: list[str], message: str) -> None:
    write_predictions(tmp_path / "preds.jsonl", 1)
    write_params(tmp_path / "params.yaml", section)
    rc = main([str(tmp_path / "preds.jsonl"), "--out", str(tmp_path / "s.jsonl"), "--params",
               str(tmp_path / "params.yaml"), *flags])
    assert rc == 2 and message in capsys.readouterr().err


def test_cli_missing_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "s.jsonl")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err
    write_predictions(tmp_path / "preds.jsonl", 1)
    assert main([str(tmp_path / "preds.jsonl"), "--out", str(tmp_path / "s.jsonl"), "--params",
                 str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml not found" in capsys.readouterr().err


def test_cli_exit_1_when_judge_unreachable_but_scores_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    srv = FakeOpenAI().start()
    url = srv.base_url
    srv.stop()
    write_predictions(tmp_path / "preds.jsonl", 2)
    write_params(tmp_path / "params.yaml", f"  max_retries: 0\n  cache_path: {tmp_path / 'judge.sqlite'}\n")
    rc = main([str(tmp_path / "preds.jsonl"), "--out", str(tmp_path / "s.jsonl"), "--params",
               str(tmp_path / "params.yaml"), "--model", "openai/fake", "--api-base", url])
    err = capsys.readouterr().err
    assert rc == 1 and "2 of 2 rows" in err and "connection error" in err
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == 2
