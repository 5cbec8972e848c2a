"""Stage sft: the SFT warm-up (TRL SFTTrainer), LoRA merged or full-parameter, saved as a full model."""

from pathlib import Path

from tasks.common import StageContext, log_artifacts, require, stage_main


def run(cfg, ctx: StageContext) -> dict:
    import pandas as pd

    from rarl_core.io import atomic_dir, write_json
    from rarl_core.sft import train_sft

    augmented = pd.read_parquet(require(Path(cfg.paths.augmented) / "train.parquet", "augment"))
    with atomic_dir(cfg.paths.sft_model) as tmp:
        metrics = train_sft(cfg, augmented, tmp, Path(cfg.paths.checkpoints) / "sft", ["mlflow"])
    write_json(cfg.paths.sft_metrics, metrics)
    if cfg.mlflow.log_models:
        log_artifacts(cfg, cfg.paths.sft_model, "model")
    return metrics


def main(argv=None) -> int:
    return stage_main("sft", run, ("model", "sft"), argv)


if __name__ == "__main__":
    raise SystemExit(main())
