"""The `rarl/evaluate` deployment: evaluation, judge and report only, for a model the user names.

The model (a save_pretrained folder or a PEFT adapter folder) is added to `evaluate.extra_models` as an override,
so the run is a DVC experiment like any other overridden run (see flows/pipeline.py): it runs in its own temporary
workspace, shows in `dvc exp show`, and the stages it needs upstream (the SFT and GRPO models it is compared with)
are restored from DVC's run cache when they were computed before, or run first when they were not.

    prefect deployment run rarl/evaluate --param params='{"model_path": "/models/my-adapter", "model_name": "mine"}'
"""

from __future__ import annotations

from prefect import flow

from flows.params import EvaluateParameters
from flows.pipeline import execute


@flow(name="rarl", log_prints=True)
def evaluate(params: EvaluateParameters, project_dir: str | None = None) -> str:
    """Evaluate `params.model_path` beside the pipeline's models; judge and report; publish the report."""
    return execute(params, project_dir)


if __name__ == "__main__":
    import sys

    evaluate(EvaluateParameters(model_path=sys.argv[1]))
