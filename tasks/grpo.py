"""Stage grpo: a fresh LoRA adapter on the SFT model trained with GRPO on the named, weighted rewards."""

from pathlib import Path

from tasks.common import StageContext, log_artifacts, require, stage_main


def run(cfg, ctx: StageContext) -> dict:
    import pandas as pd

    from rarl_core.grpo import train_grpo
    from rarl_core.io import atomic_dir, write_json

    augmented = pd.read_parquet(require(Path(cfg.paths.augmented) / "train.parquet", "augment"))
    sft_model = require(cfg.paths.sft_model, "sft")
    with atomic_dir(cfg.paths.grpo_adapter) as tmp:
        metrics = train_grpo(cfg, augmented, sft_model, tmp, Path(cfg.paths.checkpoints) / "grpo", ["mlflow"])
    write_json(cfg.paths.grpo_metrics, metrics)
    if cfg.mlflow.log_models:
        log_artifacts(cfg, cfg.paths.grpo_adapter, "adapter")
    return metrics


def main(argv=None) -> int:
    return stage_main("grpo", run, ("model", "grpo"), argv)


if __name__ == "__main__":
    raise SystemExit(main())
