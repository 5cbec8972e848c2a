"""Orchestration overhead: the same pipeline through `prefect deployment run rarl/train`, through `dvc repro`, and
as the same stage functions called one after another in a single Python process.

Why: DVC and Prefect buy caching, lineage, retries, a UI; the price is a new process per stage (imports: ~10 s each
on 2 cores), DVC hashing and caching outputs, Prefect scheduling a run on a worker. The in-process run is the floor:
each stage's `main` in pipeline order, exactly the command dvc.yaml names (`python -m tasks.grpo --variant rl`
becomes `tasks.grpo.main(["--variant", "rl"])`), in one fresh interpreter. Overhead = path - floor, as seconds and as
a share of the path's total.

Every run starts from a fresh git copy of the project (tests/conftest.py copy_project: no data, models, DVC cache or
MLflow store), so each path really runs every stage. Paths alternate within a repeat (in-process, dvc, prefect) so
machine noise hits all three.

The Prefect path is the real one: `rarl serve --no-mlflow` (a Prefect server on 127.0.0.1, the `local` process pool,
prefect.yaml's deployments, a worker; its own PREFECT_HOME in a temporary folder) started once and not timed, then
per run `prefect deployment run rarl/train --param project_dir=<copy> --watch`, timed from the command's start to its
exit. Its time includes the worker picking the run up (it polls every PREFECT_WORKER_QUERY_SECONDS, 10 s by
default); the server's own record of the flow run's duration is reported beside it.

Sizes: `small` (default) is the shipped params shrunk as the tests shrink them (tests/conftest.py SMALL: 100 SFT
steps, 4 GRPO steps, 24 evaluation questions), `tiny` the smallest (tests/flows/helpers.py TINY, one GRPO variant),
`shipped` params.yaml as it is (about 3.5 minutes a path on 2 idle cores). The output says which.

    python benchmarks/orchestration.py [--repeats 2] [--size small|tiny|shipped] [--paths inprocess,dvc,prefect]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from _common import header, spread, write_result  # benchmarks/_common.py


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.conftest's project copy; the in-process child puts its copy before it
PATHS = ("inprocess", "dvc", "prefect")
GIT = ["git", "-c", "user.email=bench@rarl.local", "-c", "user.name=rarl benchmarks"]
RUN_TIMEOUT_S = {"tiny": 900, "small": 1800, "shipped": 3600}
SIZE_NOTE = {
    "tiny": "shrunken params: tests/flows/helpers.py TINY (8 SFT steps, 2 GRPO steps, one variant, 4 questions)",
    "small": "shrunken params: tests/conftest.py SMALL (100 SFT steps, 4 GRPO steps x 2 variants, 24 questions)",
    "shipped": "params.yaml as shipped (the embedded default)",
}


# ----------------------------------------------------------------------------------------------------------------
# The floor: every stage's main() in one process. Runs in a child (`--in-process DIR`), so it starts cold too.
# ----------------------------------------------------------------------------------------------------------------


def run_in_process(project: Path, plan: list[list]) -> dict[str, float]:
    """Call each stage's `main(args)` in order, in `project`; return seconds per stage."""
    os.chdir(project)
    sys.path.insert(0, str(project))  # the copy's own tasks/ and rarl_core/, as `python -m` from there would import
    from importlib import import_module

    seconds = {}
    for name, module, args in plan:
        start = time.perf_counter()
        code = import_module(module).main(list(args))
        if code:
            raise SystemExit(f"stage {name} ({module} {' '.join(args)}) exited with {code}")
        seconds[name] = round(time.perf_counter() - start, 3)
    return seconds


# ----------------------------------------------------------------------------------------------------------------
# Set-up helpers (not timed)
# ----------------------------------------------------------------------------------------------------------------


def make_project(dest: Path, size: str) -> Path:
    """A fresh git copy of the project with the benchmark's params committed (relative paths, as shipped)."""
    from tests.conftest import copy_project, small_params
    from tests.flows.helpers import TINY

    dest.mkdir(parents=True)
    copy_project(dest)
    if size != "shipped":
        small_params(dest, absolute_paths=False, **(TINY if size == "tiny" else {}))
        subprocess.run([*GIT, "commit", "-qam", f"benchmark params: {size}"], cwd=dest, check=True)
    return dest


def stage_plan(project: Path) -> list[list]:
    """[stage, module, args] for every DVC stage in the order the Prefect flow runs them, from dvc.yaml's commands
    (each is `python -m <module> <args>`)."""
    from dvc.repo import Repo

    from flows.params import pipeline_stages

    order = pipeline_stages(project)
    with Repo(str(project)) as repo:
        commands = {stage.name: stage.cmd for stage in repo.index.stages}
    plan = []
    for name in order:
        words = shlex.split(commands[name])
        if words[:2] != ["python", "-m"]:
            raise ValueError(f"stage {name}: cannot run {commands[name]!r} in-process (expected python -m ...)")
        plan.append([name, words[2], words[3:]])
    return plan


def env(**extra: str) -> dict[str, str]:
    """The pipeline's environment (this interpreter's bin first on PATH, offline-safe settings), quiet progress."""
    from tasks.common import pipeline_env

    return {**pipeline_env(), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "PREFECT_CLI_COLORS": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra}


def run_logged(cmd: list[str], cwd: Path, environ: dict[str, str], log: Path, timeout_s: float) -> tuple[float, str]:
    """Run `cmd`, its output to `log`; return (wall seconds, output). Raises with the output's tail on failure."""
    start = time.perf_counter()
    with log.open("w") as out:
        try:
            code = subprocess.run(cmd, cwd=cwd, env=environ, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            code = f"timeout after {timeout_s:.0f} s"
    seconds = time.perf_counter() - start
    output = log.read_text(errors="replace")
    if code:
        tail = "".join(output.splitlines(keepends=True)[-40:])
        raise RuntimeError(f"{shlex.join(cmd)} in {cwd} failed ({code}); log {log}:\n{tail}")
    return seconds, output


# ----------------------------------------------------------------------------------------------------------------
# Prefect: `rarl serve` once, then `prefect deployment run` per measurement
# ----------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_prefect(host: Path, home: Path, log: Path) -> tuple[subprocess.Popen, dict[str, str], float]:
    """`rarl serve --no-mlflow` in `host` with its own PREFECT_HOME; returns (process, env for the CLI, seconds to
    ready). Reads its output until it says it is ready."""
    port = free_port()
    environ = env(PREFECT_HOME=str(home), PREFECT_API_URL=f"http://127.0.0.1:{port}/api")
    rarl = str(Path(sys.executable).parent / "rarl")
    start = time.perf_counter()
    proc = subprocess.Popen([rarl, "serve", "--no-mlflow", "--quiet", "--prefect-port", str(port)], cwd=host,
                            env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    ready = threading.Event()

    def pump() -> None:
        with log.open("w") as out:
            for line in proc.stdout:
                out.write(line)
                out.flush()
                if "ready in" in line:
                    ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 400
    while not ready.wait(1.0):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_prefect(proc)
            raise RuntimeError(f"rarl serve did not become ready (exit {proc.returncode}); log {log}:\n"
                               + log.read_text(errors="replace")[-3000:])
    return proc, environ, time.perf_counter() - start


def stop_prefect(proc: subprocess.Popen) -> None:
    """SIGTERM: `rarl serve` stops its worker (SIGINT) and server itself; SIGKILL its group if it does not."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_prefect(project: Path, environ: dict[str, str], log: Path, timeout_s: float) -> tuple[float, float | None]:
    """`prefect deployment run rarl/train --watch` on `project`; (wall seconds, the server's flow-run seconds)."""
    prefect = str(Path(sys.executable).parent / "prefect")
    cmd = [prefect, "deployment", "run", "rarl/train", "--param", f"project_dir={project}", "--watch"]
    seconds, output = run_logged(cmd, project, environ, log, timeout_s)
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", output)
    if not match:
        return seconds, None
    with urllib.request.urlopen(f"{environ['PREFECT_API_URL']}/flow_runs/{match.group(1)}", timeout=10) as resp:
        run = json.loads(resp.read())
    return seconds, run.get("total_run_time")


# ----------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="pipeline runs of each path")
    parser.add_argument("--size", choices=("small", "tiny", "shipped"), default="small", help="params (see above)")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {','.join(PATHS)}")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for the JSON")
    parser.add_argument("--in-process", type=Path, help=argparse.SUPPRESS)  # the child of the in-process path
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_process:
        print("STAGE_SECONDS " + json.dumps(run_in_process(args.in_process, json.loads(args.plan))))
        return {}
    paths = [p for p in PATHS if p in args.paths.split(",")]
    if not paths or len(paths) != len(args.paths.split(",")):
        parser.error(f"--paths: choose from {', '.join(PATHS)}")

    load_before = os.getloadavg()
    timeout_s = RUN_TIMEOUT_S[args.size]
    seconds: dict[str, list[float]] = {p: [] for p in paths}
    flow_run_s: list[float] = []
    stage_seconds: list[dict[str, float]] = []
    prefect_startup_s = None
    with tempfile.TemporaryDirectory(prefix="rarl-orchestration-") as tmp:
        root = Path(tmp)
        plan = stage_plan(make_project(root / "plan", args.size))
        server = None
        try:
            if "prefect" in paths:
                host = make_project(root / "prefect-host", args.size)
                server, prefect_env, prefect_startup_s = start_prefect(host, root / "prefect-home",
                                                                       root / "prefect-serve.log")
            for repeat in range(args.repeats):
                for path in paths:
                    project = make_project(root / f"{path}-{repeat}", args.size)
                    log = root / f"{path}-{repeat}.log"
                    if path == "inprocess":
                        cmd = [sys.executable, __file__, "--in-process", str(project), "--plan", json.dumps(plan)]
                        s, output = run_logged(cmd, project, env(), log, timeout_s)
                        stage_seconds.append(json.loads(output.rsplit("STAGE_SECONDS ", 1)[1].splitlines()[0]))
                    elif path == "dvc":
                        s, _ = run_logged([sys.executable, "-m", "dvc", "repro"], project, env(), log, timeout_s)
                    else:
                        s, run_s = run_prefect(project, prefect_env, log, timeout_s)
                        if run_s is not None:
                            flow_run_s.append(run_s)
                    seconds[path].append(s)
                    if not (project / "reports" / "report.md").is_file():
                        raise RuntimeError(f"{path}: the run finished without reports/report.md; log {log}")
        finally:
            if server is not None:
                stop_prefect(server)

    result = header("orchestration", load_before) | {
        "size": args.size,
        "note": SIZE_NOTE[args.size],
        "stages": [name for name, _, _ in plan],
        "repeats": args.repeats,
        "seconds": {path: spread(values) for path, values in seconds.items()},
    }
    if flow_run_s:
        result["prefect_flow_run_s"] = spread(flow_run_s)  # the server's record: from Running to Completed
    if prefect_startup_s is not None:
        result["prefect_startup_s"] = round(prefect_startup_s, 2)  # rarl serve until ready; once, not in the totals
    if "inprocess" in seconds:
        floor = statistics.median(seconds["inprocess"])
        result["inprocess_stage_seconds_median"] = {
            name: round(statistics.median(run[name] for run in stage_seconds), 2) for name in stage_seconds[0]}
        result["overhead_vs_inprocess"] = {}
        for path in paths:
            if path != "inprocess":
                total = statistics.median(seconds[path])
                result["overhead_vs_inprocess"][path] = {
                    "seconds": round(total - floor, 2),
                    "share_of_total": round((total - floor) / total, 3),
                    "per_stage_s": round((total - floor) / len(plan), 2),
                }
    write_result("orchestration", result, args.out)
    return result


if __name__ == "__main__":
    main()
