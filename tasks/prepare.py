"""Stage prepare: every dataset in params.yaml -> normalised parquet + content-addressed images + data card."""

from pathlib import Path

from tasks.common import StageContext, log_artifacts, stage_main


def run(cfg, ctx: StageContext) -> dict:
    from rarl_core.data import prepare

    cards = prepare(cfg.data, Path(cfg.paths.prepared))
    for name in cards:
        log_artifacts(cfg, Path(cfg.paths.prepared) / name / "card.json", f"data/{name}")
    return {name: {"rows": c["rows"], "images": c["images"], **c["by_split"]} for name, c in cards.items()}


def main(argv=None) -> int:
    return stage_main("prepare", run, ("data",), argv)


if __name__ == "__main__":
    raise SystemExit(main())
