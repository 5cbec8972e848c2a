"""rarl/compare fanned out over a work pool: two process workers, each in its own clone of the project (as on its own
host), a DVC remote they share (a local folder) and one MLflow server on 127.0.0.1.

Asserts what the multi-host recipe promises: every unit ran, both workers took units, the analysis here restored
them all from DVC's run cache and wrote a complete report, and MLflow holds one comparison run with a run per unit.
The wall time of one worker against two is a benchmark (benchmarks/compare_fanout.py), not asserted here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

pytestmark = pytest.mark.slow


def test_two_workers_share_the_units_and_the_analysis_reads_them_all(tmp_path):
    from compare_fanout import fanout

    run = fanout(tmp_path, workers=2, threads=1)
    assert sorted(run["units"], key=str) == sorted([("sft", None), ("rl", 0), ("rarl", 0), ("sft_control", 0)],
                                                   key=str)
    by_worker = run["units_by_worker"]
    assert all(by_worker.values()), f"a worker took no unit: {by_worker}"
    done = sorted(u for units in by_worker.values() for u in units)
    assert done == sorted(["compare_grpo@rl-0", "compare_grpo@rarl-0", "compare_control@0", "compare_eval_sft",
                           "compare_eval_grpo@rl-0", "compare_eval_grpo@rarl-0", "compare_eval_control@0"]), done
    main = Path(run["main"])
    assert (main / "reports" / "compare" / "compare.md").read_text().startswith("# Does RARL beat RL and SFT?")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (comparison,) = mlflow.search_runs(experiment_names=["rarl"], output_format="list",
                                       filter_string="tags.`rarl.kind` = 'comparison'")
    units = mlflow.search_runs(experiment_names=["rarl"], output_format="list",
                               filter_string=f"tags.`mlflow.parentRunId` = '{comparison.info.run_id}'")
    assert sorted(r.info.run_name for r in units) == ["rarl seed 0", "rl seed 0", "sft", "sft_control seed 0"]
