"""Prefect flows: the RARL pipeline's DVC stages run from Prefect (deployments `rarl/train` and `rarl/evaluate`).

pipeline.py   the `rarl` flow and its execution (workspace stages, or an isolated DVC experiment)
evaluate.py   the same flow body for evaluation, judge and report of one more model
params.py     the typed parameters and their validation against the project
runner.py     DVC in a child process: stage outcomes, time limits, failure messages
browser.py    the HTML report in headless Chromium (the screenshot logged to MLflow)
serve.py      both deployments served from one process, without a work pool
"""
