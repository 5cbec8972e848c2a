"""`rarl compare` fanned out over a Prefect work pool: its wall time with one worker against two, on this machine.

Why: each unit of the comparison (a GRPO run, an SFT control, an evaluation) is a DVC stage, and with `fan_out`
the `rarl/compare` flow runs the units of one level as flow runs of `rarl/compare-unit`, which every worker of the
pool takes as it is free. This measures what that buys, and exercises the multi-host recipe on one machine: each
worker works in its own `git clone` of the project (as on its own host), all share a DVC remote (a local folder
here, S3 or SSH across hosts) and one MLflow server on 127.0.0.1, the units' outputs and lineage travel through
DVC's run cache (`dvc push/pull --run-cache`).

Held equal between the two runs: the same project and params (one seed, the tests' tiny sizes with both GRPO
variants), a fresh remote and fresh clones each time (nothing cached from the other run), the data and SFT warm-up
built beforehand in the main checkout (not timed), the workers' poll interval (2 s), and the CPU split: each worker
gets cpus / workers torch threads, so two workers on 2 cores run two 1-thread units at once where one worker runs
one 2-thread unit. Timed: the `rarl/compare` flow run, from start to end.

    python benchmarks/compare_fanout.py [--workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import header, write_result
from orchestration import env, free_port, run_logged, start_prefect, stop_prefect

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GIT = ["git", "-c", "user.email=bench@rarl.local", "-c", "user.name=rarl benchmark"]
POOL = "fanout"
SIZES = {"compare": {"seeds": [0], "control": "tokens", "judge": True},
         "grpo": {"variants": {"rl": {"format": 1.0, "accuracy": 1.0, "reasoning": 0.0},
                               "rarl": {"format": 1.0, "accuracy": 1.0, "reasoning": 1.0}}}}


def bin_(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def start(cmd: list[str], cwd: Path, environ: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, env=environ, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen, sig: int = 2) -> None:
    """SIGINT (how a Prefect worker stops cleanly), then SIGKILL its group if it lingers."""
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_http(url: str, proc: subprocess.Popen, log: Path, wait_s: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited; log {log}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {wait_s:.0f} s")


def units_by_checkout(api_url: str, checkouts: list[Path]) -> dict[str, list[str]]:
    """Which worker ran which unit: each rarl/compare-unit flow run logs "unit <stage> in checkout <path>"."""
    import asyncio

    os.environ["PREFECT_API_URL"] = api_url
    from prefect.client.orchestration import get_client

    async def logs() -> list:
        found = []
        async with get_client() as client:
            while page := await client.read_logs(limit=200, offset=len(found)):
                found += page
        return found

    ran: dict[str, list[str]] = {c.name: [] for c in checkouts}
    for log in asyncio.run(logs()):
        if log.message.startswith("unit ") and " in checkout " in log.message:
            stage, checkout = log.message.removeprefix("unit ").split(" in checkout ", 1)
            ran.setdefault(Path(checkout).name, []).append(stage.rsplit(":", 1)[-1])
    return {name: sorted(stages) for name, stages in ran.items()}


def fanout(root: Path, workers: int, threads: int | None = None) -> dict:
    """One fanned-out comparison with `workers` workers, everything under `root`; returns what happened where."""
    from tests.flows.helpers import tiny_project

    root.mkdir(parents=True, exist_ok=True)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    mlflow_port = free_port()
    main = tiny_project(root / "main", **SIZES, mlflow={"tracking_uri": f"http://127.0.0.1:{mlflow_port}",
                                                        "artifact_root": str(root / "mlflow-artifacts")})
    subprocess.run([bin_("dvc"), "remote", "add", "-d", "-f", "shared", str(root / "remote")], cwd=main, check=True,
                   capture_output=True)
    subprocess.run([*GIT, "commit", "-qam", "the shared DVC remote"], cwd=main, check=True)
    base = env(OMP_NUM_THREADS=str(threads or max(1, (os.cpu_count() or 2) // workers)))
    procs: list[subprocess.Popen] = []
    server = None
    try:
        mlflow = start([bin_("mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                        "--default-artifact-root", str(root / "mlflow-artifacts"), "--host", "127.0.0.1",
                        "--port", str(mlflow_port), "--workers", "1"], root, base, logs / "mlflow.log")
        procs.append(mlflow)
        server, prefect_env, _ = start_prefect(main, root / "prefect-home", logs / "prefect.log")
        wait_http(f"http://127.0.0.1:{mlflow_port}/health", mlflow, logs / "mlflow.log")
        cli = {**base, **prefect_env}
        run_logged([bin_("prefect"), "--no-prompt", "work-pool", "create", POOL, "--type", "process"], main, cli,
                   logs / "pool.log", 120)
        run_logged([bin_("prefect"), "--no-prompt", "deploy", "--name", "compare-unit", "--pool", POOL], main, cli,
                   logs / "deploy.log", 300)
        run_logged([bin_("dvc"), "repro", "sft"], main, cli, logs / "upstream.log", 1800)  # not timed
        checkouts = []
        for i in range(workers):
            checkout = root / f"worker-{i}"
            subprocess.run(["git", "clone", "-q", str(main), str(checkout)], check=True)
            checkouts.append(checkout)
            procs.append(start([bin_("prefect"), "worker", "start", "--pool", POOL, "--type", "process", "--limit",
                                "1", "--name", f"worker-{i}"], checkout,
                               {**cli, "RARL_PROJECT_DIR": str(checkout), "PREFECT_WORKER_QUERY_SECONDS": "2"},
                               logs / f"worker-{i}.log"))
        code = ("from flows.compare import compare; import sys; "
                "s = compare(params={'fan_out': True}, project_dir=sys.argv[1], return_state=True); "
                "print('STATE', s.type.value, s.message); sys.exit(0 if s.is_completed() else 1)")
        seconds, _ = run_logged([sys.executable, "-c", code, str(main)], REPO, {**cli, "PYTHONPATH": str(REPO)},
                                logs / "compare.log", 3600)
        results = json.loads((main / "reports" / "compare" / "results.json").read_text())
        ran = units_by_checkout(prefect_env["PREFECT_API_URL"], checkouts)
        return {"workers": workers, "seconds": round(seconds, 1), "units_by_worker": ran,
                "units": [(u["model"], u["seed"]) for u in results["units"]], "main": str(main)}
    finally:
        for proc in reversed(procs[1:]):
            stop(proc)
        if server is not None:
            stop_prefect(server)
        if procs:
            stop(procs[0], 15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1,2", help="worker counts to compare, e.g. 1,2")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--repeats", type=int, default=1, help="accepted for run.py; one run per worker count")
    args = parser.parse_args()
    load = os.getloadavg()
    runs = []
    for n in (int(x) for x in args.workers.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"rarl-fanout-{n}-") as tmp:
            runs.append(fanout(Path(tmp), n))
            runs[-1].pop("main")
    result = header("compare_fanout", load) | {"runs": runs}
    if len(runs) == 2:
        result["ratio_one_over_two"] = round(runs[0]["seconds"] / runs[1]["seconds"], 2)
    write_result("compare_fanout", result, **({"out": args.out} if args.out else {}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
