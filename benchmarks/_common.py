"""What every benchmark script shares: the spread of repeated measurements and where its JSON result goes.

Scripts import it as `from _common import ...` (Python puts a script's own folder first on sys.path).
"""

from __future__ import annotations

import json
import platform
import statistics
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def spread(values: list[float], digits: int = 4) -> dict:
    """min / median / max of repeated measurements (the suite's summary reads these three), with every value."""
    return {"min": round(min(values), digits), "median": round(statistics.median(values), digits),
            "max": round(max(values), digits), "n": len(values), "values": [round(v, digits) for v in values]}


def write_result(name: str, result: dict, out: Path = RESULTS) -> Path:
    """Write `<out>/<name>-<date>-<host>.json` and print the JSON (run.py reads it from either)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{date.today().isoformat()}-{platform.node()}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return path
