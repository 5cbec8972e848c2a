"""Stage prepare: every dataset in params.yaml -> validated parquet + content-addressed images + quarantine + card.

A dataset that fails (malformed file, too many defects, leakage into an unseen set) is reported and written nowhere;
the others are written, and the stage exits non-zero naming every failure.
"""

from pathlib import Path

from tasks.common import StageContext, log_artifacts, numeric, stage_main


def run(cfg, ctx: StageContext) -> dict:
    import mlflow

    from rarl_core.data import DataError, prepare

    prepared = Path(cfg.paths.prepared)
    cards, failures = prepare(cfg.data, prepared)
    for name in cards:
        for file in ("card.json", "quarantine.jsonl"):
            log_artifacts(cfg, prepared / name / file, f"data/{name}")
    metrics = {
        name: {"rows_in": c["rows_in"], "rows": c["rows"], "quarantined": c["rows_quarantined"],
               "images": c["images"], **c["by_split"]}
        for name, c in cards.items()
    }
    if failures:
        mlflow.log_metrics(numeric(metrics, "prepare/"))
        listed = "\n".join(f"  {name}: {message}" for name, message in failures.items())
        total = len(cfg.data.datasets)
        raise DataError(f"{len(failures)} of {total} datasets failed (the others are written):\n{listed}")
    return metrics


def main(argv=None) -> int:
    return stage_main("prepare", run, ("data",), argv)


if __name__ == "__main__":
    raise SystemExit(main())
