"""Preparation throughput (images per second) with 1 and 2 worker processes (data.num_workers), on the starter set.

Two measurements, repeated; workers 1 and 2 alternate within each repeat so that a change of machine load hits both:

    starter  what `python -m tasks.prepare` does on the default params: synthesise the starter set (serial) and
             normalise its pictures (the part the workers share)
    files    the same pictures as 448-px JPEG files read through the generic adapter and shrunk to 112 px: the path
             every downloaded dataset takes, where decoding dominates

and, as a control, a pure-Python loop on 1 and 2 processes: on a machine whose second core is busy with other work
its ratio stays near 1 too, and the dataset ratios say nothing about the code.

Usage: python benchmarks/prepare_throughput.py [--repeats 3]
Writes benchmarks/results/prepare-<date>.json and prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's rarl_core, as grpo_overhead.py and judge_throughput.py do

from rarl_core import readers
from rarl_core.checkpoints import fingerprint
from rarl_core.config import config_from_dict
from rarl_core.data import prepare

from _common import RESULTS, rates, write_result  # benchmarks/_common.py


def data_config(**values):
    """The shipped `data:` section with `values` replaced (every config value lives in params.yaml)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    return config_from_dict({**params, "data": {**params["data"], **values}}).data


def starter_data(workers: int):
    return data_config(num_workers=workers)


def files_data(workers: int, rows_file: Path):
    return data_config(num_workers=workers, datasets={"files": {"format": "generic", "path": str(rows_file)}},
                       train=["files"], in_domain=[], unseen=[])


def export_starter(folder: Path, size: int = 448) -> Path:
    """Every starter row as a generic row whose picture is a size x size JPEG file (one file per picture)."""
    examples, _ = readers._starter(112, 0)
    names: dict[int, str] = {}
    lines = []
    for e in examples:
        if id(e.image) not in names:
            names[id(e.image)] = f"{len(names):04d}.jpg"
            e.image.resize((size, size), resample=3).save(folder / names[id(e.image)], quality=95)
        split = "test" if e.group == "B" else e.split  # one dataset: group B rows join the test split
        lines.append(json.dumps({"image": names[id(e.image)], "question": e.question, "answer": e.answer,
                                 "answer_type": e.answer_type, "choices": list(e.choices), "split": split}))
    (folder / "rows.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "rows.jsonl"


def timed(data, fresh_starter: bool) -> tuple[float, int, str]:
    """Seconds for one full preparation into a fresh folder, the number of images written, and a digest of every
    file written (the same for any number of workers, or the two would not be doing the same work)."""
    if fresh_starter:
        readers._starter.cache_clear()
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        cards, failures = prepare(data, Path(out))
        seconds = time.perf_counter() - start
        digest = fingerprint({}, [Path(out)])
    assert not failures, failures
    return seconds, sum(card["images"] for card in cards.values()), digest


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


CONTROL_LOOPS = 4


def control(workers: int, n: int = 3_000_000) -> tuple[float, int, str]:
    """Seconds for CONTROL_LOOPS equal pure-Python loops on `workers` processes (fork, as the stage on Linux)."""
    start = time.perf_counter()
    if workers == 1:
        [_burn(n) for _ in range(CONTROL_LOOPS)]
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            list(pool.map(_burn, [n] * CONTROL_LOOPS))
    return time.perf_counter() - start, CONTROL_LOOPS, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows_file = export_starter(Path(folder))
        runs = {  # name -> (unit, workers -> (seconds, count))
            "starter": ("images", lambda w: timed(starter_data(w), fresh_starter=True)),
            "files": ("images", lambda w: timed(files_data(w, rows_file), fresh_starter=False)),
            "control": ("loops", control),
        }
        measured = {name: {1: [], 2: []} for name in runs}
        counts, digests = {}, {name: {1: set(), 2: set()} for name in runs}
        for _ in range(args.repeats):
            for name, (_, measure) in runs.items():
                for workers in (1, 2):
                    seconds, counts[name], digest = measure(workers)
                    measured[name][workers].append(seconds)
                    digests[name][workers].add(digest)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                    "python": platform.python_version(), "platform": platform.platform()},
        "repeats": args.repeats,
        "scenarios": {},
    }
    for name, (unit, _) in runs.items():
        one, two = ({unit: counts[name]} | rates(measured[name][w], counts[name], unit) for w in (1, 2))
        ratio = two[f"{unit}_per_s"]["median"] / one[f"{unit}_per_s"]["median"]
        result["scenarios"][name] = {"workers_1": one, "workers_2": two, "speedup_2_vs_1_median": round(ratio, 2)}
        if name != "control":  # the same files, byte for byte, from 1 and from 2 workers
            result["scenarios"][name]["identical_output"] = len(digests[name][1] | digests[name][2]) == 1
    path = write_result("prepare", result, args.out)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
