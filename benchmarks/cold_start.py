"""Cold start: how long a user waits before anything happens, measured in fresh interpreters.

`rarl --help` is the first thing a newcomer types, and every stage DVC runs is a new process that pays the import of
`rarl_core`; `import rarl_core.config` is what `rarl check` and every stage's validation pay before any work. Each
command runs as its own subprocess (wall time, interleaved across repeats so machine noise hits all of them), beside
a bare `python -c pass` as the floor no Python program beats. One warm-up pass runs first and is not counted: this is
a new process with the files in the page cache, not a cold disk.

An `-X importtime` run of `import rarl_core.config` lists the slowest top-level imports, so a regression names its
culprit.

    python benchmarks/cold_start.py [--repeats 5] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import header, spread, write_result  # benchmarks/_common.py


REPO = Path(__file__).resolve().parents[1]


def rarl_executable() -> str:
    """The venv's own `rarl` script beside this interpreter (what `pip install -e .` created)."""
    path = Path(sys.executable).parent / "rarl"
    return str(path) if path.exists() else (shutil.which("rarl") or "rarl")


COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "rarl --help": [rarl_executable(), "--help"],
    "import rarl_core": [sys.executable, "-c", "import rarl_core"],
    "import rarl_core.config": [sys.executable, "-c", "import rarl_core.config"],
}


def env() -> dict[str, str]:
    """Offline-safe, and run from outside the checkout so that only the installed package is imported."""
    return {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env(), cwd=Path.home())
    return time.perf_counter() - start


def slowest_imports(module: str, top: int = 8) -> list[dict]:
    """The packages that cost most to import, from `python -X importtime`: each module's own ("self") time summed
    by top-level package, so the figures add up instead of nesting."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                            text=True, check=True, env=env(), cwd=Path.home())
    totals: dict[str, int] = {}
    for line in result.stderr.splitlines():  # "import time:   self [us] |  cumulative |   package.module"
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        package = parts[2].strip().split(".")[0]
        totals[package] = totals.get(package, 0) + int(parts[0])
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return [{"package": name, "seconds": round(us / 1e6, 3)} for name, us in ranked]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each command")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for the JSON")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    for cmd in COMMANDS.values():  # warm-up: page cache, .pyc files
        timed(cmd)
    seconds: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, cmd in COMMANDS.items():
            seconds[name].append(timed(cmd))
    floor = statistics.median(seconds["python -c pass"])
    result = header("cold_start", load_before) | {
        "python": platform.python_version(),
        "repeats": args.repeats,
        "seconds": {name: spread(values) for name, values in seconds.items()},
        "above_interpreter_floor_median_s": {name: round(statistics.median(v) - floor, 3)
                                              for name, v in seconds.items() if name != "python -c pass"},
        "slowest_imports_of_rarl_core_config": slowest_imports("rarl_core.config"),
        "note": "wall time of a fresh subprocess each; files warm in the page cache (one uncounted warm-up pass)",
    }
    write_result("cold_start", result, args.out)
    return result


if __name__ == "__main__":
    main()
