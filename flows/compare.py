"""The `rarl/compare` deployment: does RARL beat RL and SFT? Seeds, confidence intervals, an equal-compute control.

Runs compare/dvc.yaml (the stage is tasks/compare.py; rarl_core/compare.py says what is compared and why) after the
stages it needs: prepare, augment, tiny_model and the SFT warm-up, each skipped when DVC finds it up to date. Without
overrides it runs in the project's workspace; with overrides it is an isolated DVC experiment like any other run.
The flow run shows the comparison's Markdown report as an artifact; MLflow holds one run per model and seed.

    prefect deployment run rarl/compare
    prefect deployment run rarl/compare --param params='{"overrides": {"compare.seeds": [0, 1, 2, 3, 4]}}'
"""

from __future__ import annotations

from prefect import flow

from flows.params import CompareParameters
from flows.pipeline import execute


@flow(name="rarl", log_prints=True)
def compare(params: CompareParameters = CompareParameters(), project_dir: str | None = None) -> str:
    """Run the comparison of params.yaml `compare:`; publish its report (verdict per claim, intervals, diagnostics)."""
    return execute(params, project_dir)


if __name__ == "__main__":
    compare()
