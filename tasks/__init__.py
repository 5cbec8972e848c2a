"""Thin adapters: one module per pipeline stage, each runnable as `python -m tasks.<stage>` (what dvc.yaml and
compare/dvc.yaml call); common.py is what they share.

The Prefect flow (flows/pipeline.py) and the `rarl` command run the same stages through DVC, so DVC stays the one
cache and record of what ran.
"""

STAGES = ("prepare", "augment", "tiny_model", "sft", "grpo", "merge", "evaluate", "judge", "report")

