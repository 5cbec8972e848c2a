"""rarl_core: the library of the RARL pipeline (pure functions and typed configs; no Prefect, no DVC, no argparse)."""
