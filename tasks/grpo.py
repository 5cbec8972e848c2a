"""Stage grpo@<variant>: a fresh LoRA adapter on the SFT model, trained with GRPO on the variant's reward weights."""

from pathlib import Path

from tasks.common import StageContext, is_main_process, log_artifacts, metrics_file, require, stage_main, stage_output


def run(cfg, ctx: StageContext) -> dict:
    import pandas as pd

    from rarl_core.grpo import train_grpo
    from rarl_core.files import write_json

    augmented = pd.read_parquet(require(Path(cfg.paths.augmented) / "train.parquet", "augment"))
    sft_model = require(cfg.paths.sft_model, "sft")
    out = Path(cfg.paths.adapters) / ctx.variant
    with stage_output(out) as tmp:
        metrics = train_grpo(cfg, ctx.variant, augmented, sft_model, tmp, ctx.work_dir, ["mlflow"])
    if is_main_process():
        from rarl_core.tracking import log_dataset

        log_dataset(augmented, str(Path(cfg.paths.augmented) / "train.parquet"),
                    "augmented/train", "training")
        write_json(metrics_file(cfg, f"grpo-{ctx.variant}"), metrics)
        if cfg.mlflow.log_models:
            log_artifacts(cfg, out, "adapter")
    return metrics


def checkpointing(cfg, variant):
    """Checkpoints resume only for the same params, variant, training data and SFT model."""
    inputs = [require(Path(cfg.paths.augmented) / "train.parquet", "augment").parent, Path(cfg.paths.sft_model)]
    return Path(cfg.paths.checkpoints) / f"grpo-{variant}", {"model": cfg.model, "grpo": cfg.grpo, "variant": variant}, inputs


def main(argv=None) -> int:
    return stage_main("grpo", run, ("model", "grpo"), argv, per_variant=True, checkpointing=checkpointing)


if __name__ == "__main__":
    raise SystemExit(main())
