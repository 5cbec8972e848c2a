"""Stage sft: the SFT warm-up (TRL SFTTrainer), LoRA merged or full-parameter, saved as a full model."""

from pathlib import Path

from tasks.common import StageContext, is_main_process, log_artifacts, metrics_file, require, stage_main, stage_output


def run(cfg, ctx: StageContext) -> dict:
    import pandas as pd

    from rarl_core.files import write_json
    from rarl_core.sft import train_sft

    augmented = pd.read_parquet(require(Path(cfg.paths.augmented) / "train.parquet", "augment"))
    with stage_output(cfg.paths.sft_model) as tmp:
        metrics = train_sft(cfg, augmented, tmp, ctx.work_dir, ["mlflow"])
    if is_main_process():
        from rarl_core.tracking import log_dataset

        log_dataset(augmented, str(Path(cfg.paths.augmented) / "train.parquet"),
                    "augmented/train", "training")
        write_json(metrics_file(cfg, "sft"), metrics)
        if cfg.mlflow.log_models:
            log_artifacts(cfg, cfg.paths.sft_model, "model")
    return metrics


def checkpointing(cfg, variant=None):
    """Checkpoints resume only for the same params and the same training data and base model."""
    base = Path(cfg.model.name_or_path)
    inputs = [require(Path(cfg.paths.augmented) / "train.parquet", "augment").parent, *([base] if base.exists() else [])]
    return Path(cfg.paths.checkpoints) / "sft", {"model": cfg.model, "sft": cfg.sft}, inputs


def main(argv=None) -> int:
    return stage_main("sft", run, ("model", "sft"), argv, checkpointing=checkpointing)


if __name__ == "__main__":
    raise SystemExit(main())
