"""`rarl serve`: everything a local user needs, in one command, bound to 127.0.0.1.

1. the Prefect server and UI (`prefect server start`), health-checked on /api/health;
2. the MLflow server and UI on the project's tracking store (mlflow.* of params.yaml), health-checked on /health,
   started beside the Prefect server (skipped when mlflow.tracking_uri already names a remote server);
3. the `local` process work pool and prefect.yaml's `train`, `evaluate` and `compare` deployments, created when missing;
4. a worker for that pool, ready once the server has its heartbeat.

It prints the URLs once everything answers, and the start-up time. Ctrl-C (SIGINT) or SIGTERM stops every child:
the worker first, with SIGINT (a Prefect worker stops cleanly on SIGINT, not on SIGTERM), then the servers, each in
its own process group so that nothing they started is left behind. Each child also gets a parent-death signal, so
even a `rarl serve` killed with SIGKILL does not leave servers running. Every server binds 127.0.0.1 unless
`--host` says otherwise.

Only the standard library is imported here; the servers and the worker are the venv's own `prefect` and `mlflow`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

DEPLOYMENTS = ("train", "evaluate", "compare", "compare-unit")
FLOW_NAME = "rarl"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rarl serve", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1",
                   help="interface every server binds (default 127.0.0.1: this machine only). 0.0.0.0 exposes the "
                   "UIs, which have no authentication, to the network: only behind a firewall or a proxy with auth")
    p.add_argument("--prefect-port", type=int, default=4200, help="Prefect server and UI port (default 4200)")
    p.add_argument("--mlflow-port", type=int, default=5000, help="MLflow server and UI port (default 5000)")
    p.add_argument("--pool", default="local", help="process work pool the worker polls (default: local)")
    p.add_argument("--params", default="params.yaml", help="params file naming the MLflow store (default params.yaml)")
    p.add_argument("--no-mlflow", action="store_true", help="do not start the MLflow server")
    p.add_argument("--no-worker", action="store_true", help="start the servers only (no pool, deployments, worker)")
    p.add_argument("--redeploy", action="store_true", help="deploy prefect.yaml's deployments even if they exist")
    p.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for health (default 300)")
    p.add_argument("--quiet", action="store_true", help="do not echo the servers' and the worker's output")
    return p


# ----------------------------------------------------------------------------------------------------------------
# children
# ----------------------------------------------------------------------------------------------------------------


def _child_setup(death_signal: int):
    """Run in the child between fork and exec: ask Linux to send `death_signal` when `rarl serve` dies, so no
    server outlives a killed `rarl serve`. libc is loaded here, in the parent: the child only makes the call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None

    def setup() -> None:
        libc.prctl(1, death_signal)  # PR_SET_PDEATHSIG

    return setup


@dataclass
class Child:
    name: str
    cmd: list[str]
    stop_signal: int = signal.SIGTERM
    proc: subprocess.Popen | None = None
    output: list[str] = field(default_factory=list)

    def start(self, env: dict[str, str], cwd: Path, echo: bool) -> None:
        self.proc = subprocess.Popen(
            self.cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, errors="replace", start_new_session=True,  # its own group: Ctrl-C reaches `rarl serve` only
            preexec_fn=_child_setup(self.stop_signal),
        )
        threading.Thread(target=self._pump, args=(echo,), daemon=True, name=f"{self.name}-output").start()

    def _pump(self, echo: bool) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            del self.output[:-200]
            if echo:
                print(f"[{self.name}] {line.rstrip()}", flush=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float) -> int | None:
        """Send the stop signal to the child's process group; SIGKILL the group if it is still there after
        `timeout_s`. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                print(f"rarl serve: {self.name} did not stop within {timeout_s:.0f} s; killing it", flush=True)
        try:  # whatever the child left in its group (uvicorn or gunicorn workers)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.proc.wait()


def _bin(name: str) -> str:
    """The venv's own executable next to this interpreter (works without an activated venv)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _get(url: str, wait_s: float = 3.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=wait_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


def _post(url: str, body: dict, wait_s: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=wait_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


def wait_healthy(child: Child, url: str, deadline: float, ok=lambda status, body: status == 200) -> None:
    """Poll `url` until `ok`; fail early, with the child's last output, if the child exits."""
    while time.monotonic() < deadline:
        if not child.alive():
            tail = "".join(child.output[-25:])
            raise RuntimeError(f"{child.name} exited (code {child.proc.returncode}) before it was healthy:\n{tail}")
        try:
            status, body = _get(url)
            if ok(status, body):
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{child.name} did not answer {url} in time; its last output:\n{''.join(child.output[-25:])}")


def _run_cli(cmd: list[str], env: dict[str, str], cwd: Path, what: str) -> None:
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{what} failed (exit {result.returncode}): {(result.stdout + result.stderr)[-1500:]}")


# ----------------------------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------------------------


def mlflow_store(params: str, project: Path) -> tuple[str, str] | str:
    """(backend store URI, artifact root URI) for a local store, or the remote tracking URI to leave alone."""
    from rarl_core.config import load_config
    from rarl_core.tracking import tracking_uri

    cfg = load_config(project / params).mlflow
    if cfg.tracking_uri.startswith(("http://", "https://", "databricks")):
        return cfg.tracking_uri
    uri = tracking_uri(cfg)
    root = cfg.artifact_root
    if "://" not in root:
        path = (project / root).resolve()
        path.mkdir(parents=True, exist_ok=True)
        root = path.as_uri()
    return uri, root


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.monotonic()
    project = Path.cwd()
    if not (project / "prefect.yaml").is_file() or not (project / args.params).is_file():
        print(f"rarl serve: run it from the project root (prefect.yaml and {args.params} not found in {project})",
              file=sys.stderr)
        return 2
    from tasks.common import pipeline_env

    env = pipeline_env()
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # offline, LiteLLM's cost-map fetch deadlocks `mlflow server`
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PREFECT_CLI_COLORS"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    env["PWD"] = str(project)  # prefect.yaml's pull step is "{{ $PWD }}": the flow runs must start in this project
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # no GenAI job runner: 6 fewer processes
    browse = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    api_url = f"http://{browse}:{args.prefect_port}/api"
    env["PREFECT_API_URL"] = api_url
    store = None if args.no_mlflow else mlflow_store(args.params, project)
    wanted = [("Prefect", args.prefect_port)] + ([("MLflow", args.mlflow_port)] if isinstance(store, tuple) else [])
    for what, port in wanted:
        if not _port_free(args.host, port):
            print(f"rarl serve: port {port} on {args.host} is in use (another `rarl serve`, or a {what} server "
                  f"already running?); pass --{what.lower()}-port", file=sys.stderr)
            return 2

    prefect = Child("prefect", [_bin("prefect"), "server", "start", "--host", args.host,
                                "--port", str(args.prefect_port)], signal.SIGTERM)
    children = [prefect]
    mlflow = None
    if isinstance(store, tuple):
        mlflow = Child("mlflow", [_bin("mlflow"), "server", "--backend-store-uri", store[0],
                                  "--default-artifact-root", store[1], "--host", args.host,
                                  "--port", str(args.mlflow_port), "--workers", "1"], signal.SIGTERM)
        children.append(mlflow)
    worker = Child("worker", [_bin("prefect"), "worker", "start", "--pool", args.pool, "--type", "process",
                              "--name", f"rarl-serve-{socket.gethostname()}-{os.getpid()}"], signal.SIGINT)

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum, _frame):
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        for child in children:
            child.start(env, project, echo=not args.quiet)
        deadline = time.monotonic() + args.startup_timeout
        wait_healthy(prefect, f"{api_url}/health", deadline, lambda s, b: s == 200 and b.strip() == b"true")
        print(f"rarl serve: Prefect server healthy after {time.monotonic() - started:.1f} s", flush=True)
        if not args.no_worker and not stop.is_set():
            ensure_pool_and_deployments(args, env, project, api_url)
            worker.start(env, project, echo=not args.quiet)
            children.append(worker)
            wait_worker(worker, api_url, args.pool, deadline)
        if mlflow is not None and not stop.is_set():
            wait_healthy(mlflow, f"http://{browse}:{args.mlflow_port}/health", deadline)
        if not stop.is_set():
            print_ready(args, browse, api_url, store, time.monotonic() - started)
        while not stop.is_set():
            if dead := [c for c in children if not c.alive()]:
                print(f"rarl serve: {dead[0].name} exited (code {dead[0].proc.returncode}); stopping everything. "
                      f"Its last output:\n{''.join(dead[0].output[-25:])}", file=sys.stderr, flush=True)
                code = 1
                break
            stop.wait(1.0)
    except (RuntimeError, TimeoutError) as err:
        print(f"rarl serve: {err}", file=sys.stderr, flush=True)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean stop short
        print("rarl serve: stopping " + ", ".join(c.name for c in reversed(children) if c.proc), flush=True)
        for child in reversed(children):  # worker first (SIGINT), then the servers
            child.stop(30.0 if child is worker else 15.0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        print("rarl serve: stopped", flush=True)
    return code


def ensure_pool_and_deployments(args, env: dict[str, str], project: Path, api_url: str) -> None:
    """The process work pool and the deployments of prefect.yaml, created when missing (the CLI does both)."""
    status, _ = _get(f"{api_url}/work_pools/{args.pool}")
    if status == 404:
        _run_cli([_bin("prefect"), "--no-prompt", "work-pool", "create", args.pool, "--type", "process"], env,
                 project, f"creating work pool {args.pool}")
        print(f"rarl serve: created the process work pool {args.pool!r}", flush=True)
    missing = [d for d in DEPLOYMENTS if _get(f"{api_url}/deployments/name/{FLOW_NAME}/{d}")[0] == 404]
    todo = list(DEPLOYMENTS) if args.redeploy else missing
    if todo:
        cmd = [_bin("prefect"), "--no-prompt", "deploy", "--pool", args.pool]
        for name in todo:
            cmd += ["--name", name]  # the deployment names of prefect.yaml
        _run_cli(cmd, env, project, "prefect deploy")
        print(f"rarl serve: deployed {', '.join(f'{FLOW_NAME}/{d}' for d in todo)} from prefect.yaml", flush=True)


def wait_worker(worker: Child, api_url: str, pool: str, deadline: float) -> None:
    """Ready when the server has a heartbeat from this worker (the worker itself serves no health endpoint unless
    asked, and that one would listen on every interface)."""
    name = worker.cmd[worker.cmd.index("--name") + 1]
    while time.monotonic() < deadline:
        if not worker.alive():
            raise RuntimeError(f"the worker exited (code {worker.proc.returncode}):\n{''.join(worker.output[-25:])}")
        try:
            status, body = _post(f"{api_url}/work_pools/{pool}/workers/filter", {})
            if status == 200 and any(w.get("name") == name for w in json.loads(body)):
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the worker sent no heartbeat in time:\n{''.join(worker.output[-25:])}")


def print_ready(args, browse: str, api_url: str, store, seconds: float) -> None:
    lines = ["", f"rarl serve: ready in {seconds:.1f} s (Ctrl-C stops everything)",
             f"  Prefect UI   http://{browse}:{args.prefect_port}",
             f"  Prefect API  {api_url}"]
    if isinstance(store, tuple):
        lines.append(f"  MLflow UI    http://{browse}:{args.mlflow_port}   (store {store[0]})")
    elif isinstance(store, str):
        lines.append(f"  MLflow       {store}   (mlflow.tracking_uri; not started here)")
    if not args.no_worker:
        lines.append(f"  worker       pool {args.pool!r}: deployments {', '.join(f'{FLOW_NAME}/{d}' for d in DEPLOYMENTS)}")
    lines += ["", "In another shell:", f"  export PREFECT_API_URL={api_url}",
              f"  prefect deployment run {FLOW_NAME}/train", ""]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        lines.insert(1, f"rarl serve: WARNING: bound to {args.host}: the UIs have no authentication")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
