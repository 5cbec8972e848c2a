"""Peak memory (RSS) of each training stage: sft, grpo@<variant>, as the pipeline runs them.

Each stage runs as its own subprocess, exactly the command dvc.yaml runs (`python -m tasks.sft ...`), and its
peak resident set size is read from the kernel when it exits (`os.wait4`'s ru_maxrss for that one child): no
sampling, so a short spike is not missed. A process that only imports the training stack (torch, transformers,
TRL, PEFT, MLflow) is measured too: that floor is what any stage pays before it touches data.

Sizes: `shipped` (default) keeps params.yaml's batch sizes, generation counts and lengths, which set the peak, and
cuts only max_steps (sft 10, grpo 3): the peak is reached in the first steps, once the optimizer states exist.
`tiny` uses the test suite's smallest params (tests/flows/helpers.py TINY: one GRPO variant) for smoke tests.

The parent stays light (no torch import) and starts children with fork+exec, where Linux carries the parent's peak
into the child's figure; `parent_peak_rss_mb` is printed so that floor is visible (tens of MB).

    python benchmarks/memory.py [--repeats 2] [--size shipped|tiny] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _common import header, spread, write_result  # benchmarks/_common.py

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHIPPED_SHORT = {"sft": {"max_steps": 10, "save_steps": 1000}, "grpo": {"max_steps": 3, "save_steps": 1000}}
IMPORT_FLOOR = "import torch, transformers, trl, peft, mlflow, rarl_core.modeling"


def workspace_params(root: Path, size: str) -> Path:
    """root/params.yaml: the shipped params (or the tests' TINY ones), every store under `root`."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if size == "tiny":
        from tests.flows.helpers import TINY

        overrides = TINY
    else:
        overrides = SHIPPED_SHORT
    for section, values in overrides.items():
        params[section].update(values)
    params["paths"] = {k: str(root / v) for k, v in params["paths"].items()}
    params["model"]["name_or_path"] = params["paths"]["tiny_model"]
    params["mlflow"].update(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=str(root / "artifacts"))
    params["judge"]["cache_path"] = str(root / "judge.sqlite")
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def env() -> dict[str, str]:
    """The pipeline's environment: offline-safe settings, this interpreter's bin first on PATH."""
    from tasks.common import pipeline_env

    return {**pipeline_env(), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}


def run_measured(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run `cmd` to completion; return (peak RSS in MB of that child, wall seconds). Raises on a non-zero exit."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env(), cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{tail}")
    return usage.ru_maxrss / 1024, seconds  # Linux reports kilobytes


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each training stage")
    parser.add_argument("--size", choices=("shipped", "tiny"), default="shipped",
                        help="shipped: params.yaml's shapes, fewer steps; tiny: the tests' smallest params")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for the JSON")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="rarl-memory-") as tmp:
        root = Path(tmp)
        params = workspace_params(root, args.size)
        cfg = yaml.safe_load(params.read_text())
        # The training stages' inputs, in one process to save interpreter starts (not measured).
        prep = (f"from tasks import prepare, augment, tiny_model\n"
                f"for stage in (prepare, augment, tiny_model):\n"
                f"    assert stage.main(['--params', {str(params)!r}]) == 0, stage.__name__\n")
        run_measured([py, "-c", prep], root / "inputs.log")
        stages = {"sft": [py, "-m", "tasks.sft", "--params", str(params)]}
        for variant in cfg["grpo"]["variants"]:
            stages[f"grpo@{variant}"] = [py, "-m", "tasks.grpo", "--variant", variant, "--params", str(params)]
        stages["import floor"] = [py, "-c", IMPORT_FLOOR]
        peak: dict[str, list[float]] = {name: [] for name in stages}
        seconds: dict[str, list[float]] = {name: [] for name in stages}
        for repeat in range(args.repeats):
            for name, cmd in stages.items():
                shutil.rmtree(root / cfg["paths"]["checkpoints"], ignore_errors=True)  # a fresh run, never a resume
                mb, s = run_measured(cmd, root / f"{name}-{repeat}.log")
                peak[name].append(mb)
                seconds[name].append(s)
    result = header("memory", load_before) | {
        "size": args.size,
        "params": {"sft": {k: cfg["sft"][k] for k in ("mode", "batch_size", "max_steps", "max_length")},
                   "grpo": {k: cfg["grpo"][k] for k in ("batch_size", "num_generations", "max_completion_length",
                                                        "max_steps")},
                   "model": "embedded tiny Qwen2-VL (tiny_model section of params.yaml)"},
        "repeats": args.repeats,
        "peak_rss_mb": {name: spread(values) for name, values in peak.items()},
        "above_import_floor_median_mb": {name: round(statistics.median(v) - statistics.median(peak["import floor"]), 1)
                                         for name, v in peak.items() if name != "import floor"},
        "wall_s": {name: spread(values) for name, values in seconds.items()},
        "parent_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "note": ("peak RSS of each stage's own process (os.wait4 ru_maxrss); max_steps cut, shapes as in params.yaml"
                 if args.size == "shipped" else "tiny test params (tests/flows/helpers.py TINY): smoke test only"),
    }
    write_result("memory", result, args.out)
    return result


if __name__ == "__main__":
    main()
