"""Thin adapters: one module per pipeline stage, each runnable as `python -m tasks.<stage>` (what dvc.yaml calls).

The Prefect flow (flows/pipeline.py) and the `rarl` command run the same stages through DVC, so DVC stays the one
cache and record of what ran.
"""

STAGES = ("prepare", "augment", "tiny_model", "sft", "grpo", "merge", "evaluate", "judge", "report")


def dvc_stages(variants) -> list[str]:
    """The pipeline's DVC stage names in run order; grpo and merge run once per GRPO variant (grpo@rl, ...)."""
    per_variant = ("grpo", "merge")
    return [f"{s}@{v}" if s in per_variant else s for s in STAGES for v in (variants if s in per_variant else [None])]
