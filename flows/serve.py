"""Serve the `rarl/train`, `rarl/evaluate`, `rarl/compare` and `rarl/compare-unit` deployments from this one process, without a work pool:
`python -m flows.serve`, then `prefect deployment run rarl/train` from another shell (PREFECT_API_URL set).

prefect.yaml declares the same deployments for a work pool and its worker, which is what `rarl serve` starts.
"""

from prefect import serve

from flows.compare import compare, compare_unit
from flows.evaluate import evaluate
from flows.pipeline import train

if __name__ == "__main__":
    serve(train.to_deployment(name="train"), evaluate.to_deployment(name="evaluate"),
          compare.to_deployment(name="compare"), compare_unit.to_deployment(name="compare-unit"))
