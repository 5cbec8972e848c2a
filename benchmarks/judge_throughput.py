"""Judge throughput through the real LiteLLM client: concurrent (16 in flight) vs sequential, against the local
OpenAI-compatible fake server (tests/fake_openai.py) adding 100 ms of latency per call; then a cached re-run.

Each timed run uses a fresh cache file, so every row is a call; the re-run reuses the last cache and must make zero
calls. The fake server answers instantly apart from the added latency and runs in a process of its own (as a real
judge server does), so the numbers measure the client side: how well concurrency hides a judge's latency.

Usage: python benchmarks/judge_throughput.py [--repeats 3] [--rows 64] [--out benchmarks/results]
Writes <out>/judge_throughput-<date>-<host>.json and prints it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


from rarl_core.config import load_config  # noqa: E402
from rarl_core.judge import judge_rows  # noqa: E402
from tests.fake_openai import FakeOpenAI, good  # noqa: E402

from _common import RESULTS, rates, write_result  # noqa: E402  # benchmarks/_common.py

LATENCY_S = 0.1
SHIPPED = load_config(REPO / "params.yaml").judge  # the judge section as shipped; the fake server's values below
CONCURRENT = 16


def rows(n: int) -> list[dict]:
    return [{"id": f"r{i}", "question": "Is there a lesion?", "answer": "no",
             "completion": f"<think>No lesion is visible.</think><answer>no</answer> #{i}"} for i in range(n)]


class ServerProcess:
    """The local OpenAI-compatible server in a process of its own, as a real judge server is: its request handling
    does not share the client's interpreter (GIL) and so does not count as the judge client's cost."""

    def __enter__(self) -> ServerProcess:
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        self._proc = context.Process(target=_serve, args=(child,), daemon=True)
        self._proc.start()
        self.base_url = self._conn.recv()
        return self

    def stats(self) -> dict:
        self._conn.send("stats")
        return self._conn.recv()

    def __exit__(self, *exc) -> None:
        self._conn.send("stop")
        self._proc.join(10)


def _serve(conn) -> None:
    with FakeOpenAI(default=good(3, 2), delay_s=LATENCY_S) as server:
        conn.send(server.base_url)
        while conn.recv() != "stop":
            conn.send({"count": server.count, "max_in_flight": server.max_in_flight})


def judge(server: ServerProcess, data: list[dict], concurrency: int, cache: Path):
    # the sequential and the concurrent runs differ in concurrency only
    cfg = dataclasses.replace(SHIPPED, model="openai/fake", api_base=server.base_url, concurrency=concurrency,
                              max_retries=0, timeout_s=30, cache_path=str(cache))
    run = judge_rows(data, cfg, progress=False)
    assert run.errors == 0, run.scores[0]["error"]
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON")
    parser.add_argument("--rows", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark-not-a-real-key")
    data = rows(args.rows)
    seconds: dict[int, list[float]] = {1: [], CONCURRENT: []}
    with tempfile.TemporaryDirectory() as tmp, ServerProcess() as server:
        judge(server, data[:4], CONCURRENT, Path(tmp) / "warmup.sqlite")  # LiteLLM import and first connection
        for repeat in range(args.repeats):
            for concurrency in (1, CONCURRENT):
                run = judge(server, data, concurrency, Path(tmp) / f"{repeat}-{concurrency}.sqlite")
                assert run.calls == args.rows and run.cache_hits == 0
                seconds[concurrency].append(run.elapsed_s)
        served = server.stats()
        rerun = judge(server, data, CONCURRENT, Path(tmp) / f"{args.repeats - 1}-{CONCURRENT}.sqlite")
        rerun_requests = server.stats()["count"] - served["count"]
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                    "python": platform.python_version(), "platform": platform.platform()},
        "rows": args.rows, "latency_per_call_s": LATENCY_S, "repeats": args.repeats,
        "server": "tests/fake_openai.py on 127.0.0.1, in its own process",
        "sequential": rates(seconds[1], args.rows, "rows"),
        f"concurrent_{CONCURRENT}": rates(seconds[CONCURRENT], args.rows, "rows")
        | {"max_in_flight_seen": served["max_in_flight"]},
        "speedup_median": round(statistics.median(seconds[1]) / statistics.median(seconds[CONCURRENT]), 2),
        "cached_rerun": {"calls": rerun.calls, "server_requests": rerun_requests, "cache_hits": rerun.cache_hits,
                         "seconds": round(rerun.elapsed_s, 3)},
    }
    path = write_result("judge_throughput", result, args.out)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
