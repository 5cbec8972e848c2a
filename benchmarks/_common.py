"""What every benchmark script shares: the spread of repeated measurements and where its JSON result goes.

Scripts import it as `from _common import ...` (Python puts a script's own folder first on sys.path).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def spread(values: list[float], digits: int = 4) -> dict:
    """min / median / max of repeated measurements (the suite's summary reads these three), with every value."""
    return {"min": round(min(values), digits), "median": round(statistics.median(values), digits),
            "max": round(max(values), digits), "n": len(values), "values": [round(v, digits) for v in values]}


def rates(seconds: list[float], count: int, unit: str, digits: int = 1) -> dict:
    """Throughput of repeated timed runs of `count` items: every time, and items per second as min / median / max."""
    per_s = sorted(count / s for s in seconds)
    return {"seconds": [round(s, 3) for s in seconds],
            f"{unit}_per_s": {"min": round(per_s[0], digits), "median": round(statistics.median(per_s), digits),
                              "max": round(per_s[-1], digits)}}


def header(name: str, load_before: tuple[float, ...]) -> dict:
    """The fields every result starts with: which benchmark, when, where, and the machine's load around it."""
    return {"benchmark": name, "date": date.today().isoformat(), "machine": platform.node(), "cpus": os.cpu_count(),
            "load_average": {"start": [round(x, 2) for x in load_before],
                             "end": [round(x, 2) for x in os.getloadavg()]}}


def write_result(name: str, result: dict, out: Path = RESULTS) -> Path:
    """Write `<out>/<name>-<date>-<host>.json` and print the JSON (run.py reads it from either)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{date.today().isoformat()}-{platform.node()}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return path
