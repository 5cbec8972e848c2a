"""`rarl serve` for real: it starts the Prefect server, the MLflow server, the `local` pool with prefect.yaml's
deployments and a worker; reports ready only once they answer; binds 127.0.0.1 only; runs a deployment through the
worker; and stops every child on Ctrl-C (SIGINT).

The Prefect server gets its own PREFECT_HOME (a temporary database), and free ports, so the test never touches a
server a developer has running.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.conftest import venv_env
from tests.flows.helpers import free_port, tiny_project

pytestmark = pytest.mark.slow


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.read()


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.NoSuchProcess:
            pass
    return out


def test_rarl_serve_starts_everything_on_localhost_and_stops_on_ctrl_c(tmp_path):
    root = tiny_project(tmp_path / "p")
    prefect_port, mlflow_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    env = {**venv_env(), "PREFECT_HOME": str(tmp_path / "prefect-home"), "PYTHONUNBUFFERED": "1"}
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
    started = time.monotonic()
    serve = subprocess.Popen(
        [sys.executable, "-m", "rarl.cli", "serve", "--prefect-port", str(prefect_port), "--mlflow-port",
         str(mlflow_port)], cwd=root, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 400
        while "rarl serve: ready in" not in log.read_text():
            assert serve.poll() is None, f"rarl serve exited early:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"not ready in time:\n{log.read_text()[-4000:]}"
            time.sleep(1)
        ready_s = float(re.search(r"ready in ([\d.]+) s", log.read_text()).group(1))
        print(f"rarl serve ready in {ready_s:.1f} s (seen by the test after {time.monotonic() - started:.1f} s)")
        text = log.read_text()
        api = f"http://127.0.0.1:{prefect_port}/api"
        assert f"Prefect UI   http://127.0.0.1:{prefect_port}" in text and f"http://127.0.0.1:{mlflow_port}" in text

        # healthy, and the pool, the deployments and the worker are there
        assert get(f"{api}/health") == (200, b"true")
        assert get(f"http://127.0.0.1:{mlflow_port}/health")[0] == 200
        for name in ("train", "evaluate", "compare"):
            status, body = get(f"{api}/deployments/name/rarl/{name}")
            assert status == 200 and json.loads(body)["work_pool_name"] == "local"
        request = urllib.request.Request(f"{api}/work_pools/local/workers/filter", data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert json.loads(resp.read()), "no worker registered"

        # every socket the tree listens on is on 127.0.0.1; children run offline-safe (LiteLLM's local cost map)
        procs = tree(serve.pid)
        pids = {p.pid for p in procs}
        listening = [c for c in psutil.net_connections("inet") if c.pid in pids and c.status == psutil.CONN_LISTEN]
        ports = {c.laddr.port for c in listening}
        assert {prefect_port, mlflow_port} <= ports, listening
        assert {c.laddr.ip for c in listening} == {"127.0.0.1"}, listening
        for proc in procs[1:]:
            assert proc.environ().get("LITELLM_LOCAL_MODEL_COST_MAP") == "True", proc.cmdline()

        # a deployment run through the worker, for real (one quick stage)
        run_env = {**env, "PREFECT_API_URL": api}
        result = subprocess.run(
            [str(Path(sys.executable).parent / "prefect"), "deployment", "run", "rarl/train", "--param",
             'params={"stages": ["prepare"]}', "--watch", "--watch-timeout", "300"],
            cwd=root, env=run_env, capture_output=True, text=True, timeout=400)
        assert result.returncode == 0 and "Completed" in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]
        assert (root / "data" / "prepared").is_dir(), "the worker ran the flow in the project"
    finally:
        procs = tree(serve.pid)
        stop_started = time.monotonic()
        serve.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = serve.wait(120)
        except subprocess.TimeoutExpired:
            for proc in alive(procs):
                proc.kill()
            raise
        stop_s = time.monotonic() - stop_started
    assert code == 0, log.read_text()[-3000:]
    assert "rarl serve: stopped" in log.read_text()
    time.sleep(1)
    left = alive(procs)
    assert not left, [p.cmdline() for p in left]
    print(f"rarl serve stopped in {stop_s:.1f} s")
    for port in (prefect_port, mlflow_port):
        with pytest.raises(OSError):
            get(f"http://127.0.0.1:{port}/")
