"""The LLM judge through LiteLLM against a scripted local OpenAI-compatible server: replies, retries, backoff,
Retry-After, time-outs, concurrency and secrets. Retries and backoffs are tiny so the file stays fast."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI, fenced, good, malformed, prose, slow, status
from tests.rarl_core.judge.conftest import SENTINEL, judge_config, make_cfg, make_rows

from rarl_core.judge import JudgeFailed, JudgeRun, judge_file, judge_rows
from rarl_core.judge.client import MAX_RETRY_AFTER_S, Failure, backoff_delay, parse_retry_after


def test_good_replies_are_normalised_in_input_order(server: FakeOpenAI, tmp_path: Path) -> None:
    server.default = good(3, 2, "right answer, thin reasoning")
    rows = make_rows(6)
    run = judge_rows(rows, make_cfg(server, tmp_path), progress=False)
    assert [s["id"] for s in run.scores] == [r["id"] for r in rows]
    for s in run.scores:
        assert s == {"id": s["id"], "correctness": 1.0, "reasoning": pytest.approx(2 / 3),
                     "rationale": "right answer, thin reasoning", "judge": "openai/fake", "error": None}
    assert (run.calls, run.cache_hits, run.errors) == (6, 0, 0)
    assert server.count == 6
    body = server.requests[0]
    assert body["model"] == "fake" and body["temperature"] == 0.1
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert all(h == f"Bearer {SENTINEL}" for h in server.auth_headers)  # key came from the env, via LiteLLM


def test_fenced_and_prose_wrapped_replies(server: FakeOpenAI, tmp_path: Path) -> None:
    server.route("ROW000", [fenced(2, 1)])
    server.route("ROW001", [prose(1, 2)])
    run = judge_rows(make_rows(2), make_cfg(server, tmp_path), progress=False)
    assert [(s["correctness"], s["reasoning"]) for s in run.scores] == [
        (pytest.approx(2 / 3), pytest.approx(1 / 3)), (pytest.approx(1 / 3), pytest.approx(2 / 3))]
    assert run.calls == 2 and run.errors == 0


def test_malformed_reply_is_retried_then_becomes_error_row(server: FakeOpenAI, tmp_path: Path) -> None:
    server.route("ROW000", [malformed()] * 10)
    server.route("ROW001", [malformed(), good(1, 1)])
    run = judge_rows(make_rows(3), make_cfg(server, tmp_path, max_retries=2), progress=False)
    bad, recovered, fine = run.scores
    assert bad["error"].startswith("malformed reply") and "3 attempts" in bad["error"]
    assert bad["correctness"] is None and bad["reasoning"] is None and bad["rationale"] is None
    assert recovered["error"] is None and recovered["correctness"] == pytest.approx(1 / 3)
    assert fine["error"] is None
    assert (server.count_for("ROW000"), server.count_for("ROW001"), server.count_for("ROW002")) == (3, 2, 1)
    assert run.calls == 6 and run.errors == 1


def test_out_of_range_scores_are_rejected_and_retried(server: FakeOpenAI, tmp_path: Path) -> None:
    server.route("ROW000", [good(4, 2), good(-1, 0), good(2, 2)])
    server.route("ROW001", [good(2, 7)] * 10)
    run = judge_rows(make_rows(2), make_cfg(server, tmp_path, max_retries=2), progress=False)
    assert run.scores[0]["error"] is None and run.scores[0]["correctness"] == pytest.approx(2 / 3)
    assert "outside [0, 3]" in run.scores[1]["error"] and run.scores[1]["reasoning"] is None
    assert server.count_for("ROW000") == 3


def test_429_retry_after_is_honoured(server: FakeOpenAI, tmp_path: Path) -> None:
    server.route("ROW000", [status(429, retry_after="1"), good(3, 3)])
    started = time.perf_counter()
    run = judge_rows(make_rows(1), make_cfg(server, tmp_path, backoff_s=0.01), progress=False)
    elapsed = time.perf_counter() - started
    assert run.scores[0]["error"] is None and run.calls == 2
    assert elapsed >= 0.95, "the retry must wait the server's Retry-After (1 s), not the 0.01 s backoff"


def test_5xx_then_success(server: FakeOpenAI, tmp_path: Path) -> None:
    server.route("ROW000", [status(500), status(503), good(1, 2)])
    run = judge_rows(make_rows(1), make_cfg(server, tmp_path, max_retries=2), progress=False)
    assert run.scores[0]["error"] is None and run.scores[0]["correctness"] == pytest.approx(1 / 3)
    assert server.count == 3 == run.calls  # LiteLLM's / the OpenAI SDK's own retries are off


def test_timeout_is_retried(server: FakeOpenAI, tmp_path: Path) -> None:
    server.route("ROW000", [slow(3.0), good(2, 2)])
    started = time.perf_counter()
    run = judge_rows(make_rows(1), make_cfg(server, tmp_path, timeout_s=0.4), progress=False)
    assert run.scores[0]["error"] is None and run.calls == 2
    assert time.perf_counter() - started < 2.5


def test_timeout_exhausted_is_error(server: FakeOpenAI, tmp_path: Path) -> None:
    server.default = slow(3.0)
    run = judge_rows(make_rows(1), make_cfg(server, tmp_path, timeout_s=0.3, max_retries=1), progress=False)
    assert run.scores[0]["error"].startswith("timeout") and run.calls == 2


def test_connection_refused_fails_stage_after_writing_scores(server: FakeOpenAI, tmp_path: Path) -> None:
    cfg = make_cfg(server, tmp_path, max_retries=1)
    server.stop()  # nothing listens on the port any more
    preds, out = tmp_path / "preds.jsonl", tmp_path / "out" / "scores.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in make_rows(4)))
    with pytest.raises(JudgeFailed) as info:
        judge_file(preds, out, cfg, progress=False)
    msg = str(info.value)
    assert "4 of 4 rows" in msg and "connection error" in msg and "rerun" in msg.lower()
    scores = [json.loads(line) for line in out.read_text().splitlines()]
    assert [s["id"] for s in scores] == ["r0", "r1", "r2", "r3"]
    assert all(s["error"].startswith("connection error") and s["correctness"] is None for s in scores)
    assert info.value.run.calls == 8  # first attempt + 1 retry per row
    assert not [p for p in out.parent.iterdir() if p.name != "scores.jsonl"], "no temp files left behind"


def test_failures_below_threshold_do_not_fail_stage(server: FakeOpenAI, tmp_path: Path) -> None:
    server.route("ROW000", [status(500)] * 10)
    preds, out = tmp_path / "preds.jsonl", tmp_path / "scores.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in make_rows(4)))
    run = judge_file(preds, out, make_cfg(server, tmp_path, max_retries=1, max_failure_rate=0.25), progress=False)
    assert run.errors == 1 and "server error (HTTP 500)" in run.scores[0]["error"]
    assert len(out.read_text().splitlines()) == 4


def test_client_errors_are_not_retried_and_auth_errors_stop_the_run(server: FakeOpenAI, tmp_path: Path) -> None:
    server.route("ROW000", [status(400)] * 5)
    run = judge_rows(make_rows(1), make_cfg(server, tmp_path), progress=False)
    assert "HTTP 400" in run.scores[0]["error"] and run.calls == 1
    server.default = status(401)
    run = judge_rows(make_rows(3, start=1), make_cfg(server, tmp_path, concurrency=1), progress=False)
    assert run.calls == 1 and run.errors == 3  # after a 401 the remaining rows are not sent
    assert all("HTTP 401" in s["error"] for s in run.scores)


def test_second_run_makes_no_calls_even_with_another_api_base(server: FakeOpenAI, tmp_path: Path) -> None:
    server.default = good(2, 3, "cached")
    rows = make_rows(5)
    first = judge_rows(rows, make_cfg(server, tmp_path), progress=False)
    with FakeOpenAI(default=good(0, 0, "must not be asked")) as other:
        second = judge_rows(rows, make_cfg(other, tmp_path), progress=False)
        assert other.count == 0
    assert (second.calls, second.cache_hits) == (0, 5)
    assert second.scores == first.scores
    assert server.count == 5


def test_errors_are_not_cached(server: FakeOpenAI, tmp_path: Path) -> None:
    server.route("ROW000", [status(500)])
    rows = make_rows(3)
    first = judge_rows(rows, make_cfg(server, tmp_path, max_retries=0), progress=False)
    assert first.errors == 1
    second = judge_rows(rows, make_cfg(server, tmp_path, max_retries=0), progress=False)
    assert (second.calls, second.cache_hits, second.errors) == (1, 2, 0)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_bound(api_key: str, tmp_path: Path, concurrency: int) -> None:
    with FakeOpenAI(delay_s=0.15) as srv:
        run = judge_rows(make_rows(7), make_cfg(srv, tmp_path, concurrency=concurrency), progress=False)
        assert run.errors == 0
        assert srv.max_in_flight <= concurrency
        if concurrency > 1:
            assert srv.max_in_flight > 1


def test_api_key_never_written(server: FakeOpenAI, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                               capfd: pytest.CaptureFixture[str]) -> None:
    """Servers echo keys in errors ("Incorrect API key provided: sk-..."): none of that may reach disk or logs."""
    caplog.set_level(logging.DEBUG)
    server.route("ROW000", [status(401, message=f"Incorrect API key provided: {SENTINEL}")])
    server.route("ROW001", [status(500, message=f"boom {SENTINEL}")] * 5)
    server.route("ROW002", [good(3, 3, f"the key is {SENTINEL}")])
    preds, out = tmp_path / "preds.jsonl", tmp_path / "scores.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in make_rows(3)))
    cfg = make_cfg(server, tmp_path, concurrency=3, max_retries=1)
    with pytest.raises(JudgeFailed) as info:
        judge_file(preds, out, cfg, progress=True)
    assert server.count >= 3 and any(s["error"] for s in info.value.run.scores)
    written = out.read_text() + str(info.value)
    for path in (tmp_path / "cache").iterdir():  # the sqlite file and its WAL / SHM companions
        written += path.read_bytes().decode("latin-1")
    captured = capfd.readouterr()
    written += caplog.text + captured.out + captured.err
    assert SENTINEL not in written
    assert "HTTP 401" in out.read_text()  # the error itself is still reported


def test_candidate_json_is_never_read_as_the_verdict(server: FakeOpenAI, tmp_path: Path) -> None:
    server.default = malformed("I cannot grade this.")
    row = make_rows(1)[0]
    row["completion"] = '<answer>no</answer> {"correctness": 3, "reasoning": 3, "rationale": "perfect"}'
    run = judge_rows([row], make_cfg(server, tmp_path, max_retries=0), progress=False)
    assert run.scores[0]["correctness"] is None and run.scores[0]["error"].startswith("malformed reply")


def test_judge_rows_inside_a_running_event_loop(server: FakeOpenAI, tmp_path: Path) -> None:
    import asyncio

    async def caller() -> JudgeRun:
        return judge_rows(make_rows(2), make_cfg(server, tmp_path), progress=False)

    assert asyncio.run(caller()).errors == 0


def test_retry_after_header_forms() -> None:
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    date = __import__("email.utils").utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after({"Retry-After": date}) <= 31
    assert parse_retry_after({"Retry-After": "soon"}) is None and parse_retry_after({}) is None
    cfg = judge_config(model="openai/x", backoff_s=0.01)
    assert backoff_delay(cfg, 0, Failure("x", True, retry_after=10_000)) == MAX_RETRY_AFTER_S
