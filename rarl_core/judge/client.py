"""Calling an LLM judge through LiteLLM: bounded concurrency, retries with backoff (tenacity), Retry-After honoured.

LiteLLM's and the OpenAI SDK's own retries are off (``num_retries=0``), so the retry budget is ``judge.max_retries``
and nothing else. Timeouts, 429 (honouring Retry-After), 5xx, refused connections and malformed replies are retried
with exponential backoff and a little jitter; other client errors are not, and a 401/403 stops the rows not yet sent
(a wrong key will not become right on the next row). A row that still fails gets a reason, never an exception.

LiteLLM is imported lazily, inside the functions that call it, so ``import rarl_core.judge`` stays cheap.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import logging
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import tenacity

from rarl_core.config import JudgeConfig
from rarl_core.judge.prompt import JudgeScore, MalformedReply, build_messages, parse_reply
from rarl_core.judge.redact import scrub

MAX_BACKOFF_S = 60.0  # cap on one exponential-backoff sleep
MAX_RETRY_AFTER_S = 120.0  # cap on a server's Retry-After, so one bad header cannot stall the run for hours
MAX_ERROR_CHARS = 300


def import_litellm() -> Any:
    """Import LiteLLM quietly: local cost map (no network at import), no debug banners, HTTP loggers at WARNING.

    Why the loggers: request-level debug logs of LiteLLM/OpenAI/httpx may carry request details we never want in
    logs; the judge reports its own errors per row instead.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.set_verbose = False
    litellm.turn_off_message_logging = True  # no question or completion text (data, maybe PHI) in any callback's log
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in ("openai", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return litellm


@dataclass
class Failure:
    """Why one attempt failed, and whether (and how soon) to try again."""

    reason: str
    retryable: bool
    retry_after: float | None = None


class AttemptFailed(Exception):
    """One attempt of one row failed; carries the Failure that tenacity's retry and wait decisions read."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        chain.append(cur)
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return chain


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date); None when absent/unreadable."""
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    try:
        if "retry-after-ms" in lower:
            return max(0.0, float(lower["retry-after-ms"]) / 1000)
        if "retry-after" in lower:
            value = lower["retry-after"].strip()
            try:
                return max(0.0, float(value))
            except ValueError:
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, when.timestamp() - time.time())
    except (ValueError, TypeError, OverflowError):
        return None
    return None


def _retry_after(exc: BaseException) -> float | None:
    """Retry-After from wherever LiteLLM kept the response headers (they move between versions), whole chain."""
    for err in _exception_chain(exc):
        response = getattr(err, "response", None)
        for headers in (getattr(err, "litellm_response_headers", None), getattr(err, "headers", None),
                        getattr(response, "headers", None)):
            if isinstance(headers, Mapping) or hasattr(headers, "items"):
                found = parse_retry_after(headers)  # type: ignore[arg-type]
                if found is not None:
                    return found
    return None


def classify(exc: BaseException) -> Failure:
    """Map an exception from LiteLLM to a short reason and a retry decision."""
    import openai  # a LiteLLM dependency; imported here so the module import stays cheap

    if isinstance(exc, MalformedReply):
        return Failure(f"malformed reply: {scrub(str(exc))[:MAX_ERROR_CHARS]}", True)
    chain = _exception_chain(exc)
    detail = scrub(str(exc))[:MAX_ERROR_CHARS]
    if any(isinstance(e, (openai.APITimeoutError, asyncio.TimeoutError, TimeoutError)) for e in chain):
        return Failure(f"timeout: {detail}", True)
    status = next((s for s in (getattr(e, "status_code", None) for e in chain) if isinstance(s, int)), None)
    if status == 429:
        return Failure(f"rate limited (HTTP 429): {detail}", True, _retry_after(exc))
    if any(isinstance(e, (openai.APIConnectionError, ConnectionError, OSError)) for e in chain):
        return Failure(f"connection error: {detail}", True)
    if status is not None and (status >= 500 or status in (408, 409)):
        return Failure(f"server error (HTTP {status}): {detail}", True, _retry_after(exc))
    if status is not None:
        return Failure(f"request refused (HTTP {status}): {detail}", False)
    return Failure(f"unexpected error ({type(exc).__name__}): {detail}", False)


def backoff_delay(cfg: JudgeConfig, attempt: int, failure: Failure) -> float:
    """Exponential backoff with a little jitter (so parallel rows spread out); a server's Retry-After wins if longer."""
    delay = min(MAX_BACKOFF_S, cfg.backoff_s * 2**attempt) * (1 + 0.25 * random.random())
    if failure.retry_after is not None:
        delay = max(delay, min(failure.retry_after, MAX_RETRY_AFTER_S))
    return delay


@dataclass
class Counters:
    calls: int = 0
    fatal: str | None = None  # set after an auth/permission error: later rows fail without calling


async def _ask_once(litellm: Any, messages: list[dict[str, str]], cfg: JudgeConfig) -> JudgeScore:
    """One request; the outer wait_for guards against a provider path that ignores ``timeout``."""
    response = await asyncio.wait_for(
        litellm.acompletion(model=cfg.model, api_base=cfg.api_base, messages=messages, temperature=cfg.temperature,
                            timeout=cfg.timeout_s, num_retries=0),  # LiteLLM's (and the OpenAI SDK's) retries off
        timeout=cfg.timeout_s * 1.5 + 1,
    )
    try:
        text = response.choices[0].message.content
    except (AttributeError, IndexError, TypeError) as exc:
        raise MalformedReply(f"reply has no message content ({type(exc).__name__})") from None
    score = parse_reply(text or "")
    return JudgeScore(score.correctness, score.reasoning, scrub(score.rationale))  # scrubbed before it is cached


async def judge_one(litellm: Any, row: Mapping[str, Any], cfg: JudgeConfig,
                    counters: Counters) -> tuple[JudgeScore | None, str | None]:
    """Score one row with retries; returns (score, None) or (None, error reason). Never raises for API trouble."""
    messages = build_messages(row["question"], row["answer"], row["completion"])

    async def attempt() -> JudgeScore:
        if counters.fatal is not None:
            raise AttemptFailed(Failure(counters.fatal, False))
        counters.calls += 1
        try:
            return await _ask_once(litellm, messages, cfg)
        except Exception as exc:  # noqa: BLE001 - every API failure becomes a reason on the row
            raise AttemptFailed(classify(exc)) from None

    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(cfg.max_retries + 1),
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, AttemptFailed) and e.failure.retryable),
        wait=lambda state: backoff_delay(cfg, state.attempt_number - 1, state.outcome.exception().failure),
        reraise=True,
    )
    try:
        return await retrying(attempt), None
    except AttemptFailed as err:
        failure = err.failure
    if not failure.retryable:
        if re.search(r"HTTP (401|403)\b", failure.reason):
            counters.fatal = failure.reason
        return None, failure.reason
    return None, f"{failure.reason} (gave up after {cfg.max_retries + 1} attempts)"


def run_coroutine(make: Callable[[], Any]) -> Any:
    """asyncio.run, also from code that already runs an event loop (a notebook, an async flow): then in a thread."""
    try:
        asyncio.get_running_loop()
        in_loop = True
    except RuntimeError:
        in_loop = False
    if not in_loop:  # outside the except block: errors raised in the run must not chain to this RuntimeError
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()
