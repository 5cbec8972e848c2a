"""Stage merge@<variant>: a GRPO adapter merged into the SFT model, a plain save_pretrained folder."""

from pathlib import Path

from tasks.common import StageContext, log_artifacts, require, stage_main


def run(cfg, ctx: StageContext) -> dict:
    from rarl_core.files import atomic_dir
    from rarl_core.merge import merge_adapter

    base = require(cfg.paths.sft_model, "sft")
    adapter = require(Path(cfg.paths.adapters) / ctx.variant, f"grpo@{ctx.variant}")
    out = Path(cfg.paths.merged) / ctx.variant
    with atomic_dir(out) as tmp:
        metrics = merge_adapter(cfg, base, adapter, tmp)
    if cfg.mlflow.log_models:
        log_artifacts(cfg, out, "model")
    return metrics


def main(argv=None) -> int:
    return stage_main("merge", run, ("model",), argv, per_variant=True)


if __name__ == "__main__":
    raise SystemExit(main())
