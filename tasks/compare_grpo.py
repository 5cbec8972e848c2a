"""Stage compare_grpo@<variant>-<seed> (compare/dvc.yaml): one GRPO run of `rarl compare`, a variant trained with
one seed from the pipeline's SFT warm-up, exactly as the grpo stage trains it.

Writes `<out>/weights` (the LoRA adapter) and `<out>/train.json` (training seconds, tokens through the model, steps,
reward curves: the SFT control of this seed is budgeted on them). Its MLflow run, "<variant> seed <seed>", is
nested under the comparison's run; the per-step logs go in after training, so tracking costs no training time.
"""

from __future__ import annotations

from pathlib import Path

from tasks.common import StageContext, require, stage_main


def arguments(parser) -> None:
    parser.add_argument("--seed", type=int, required=True, help="training seed, one of compare.seeds")
    parser.add_argument("--out", type=Path, required=True, help="the unit's folder (weights/, train.json)")


def tracked_as(cfg, args, pipeline_parent: str):
    from rarl_core.tracking import compare_unit_run

    return compare_unit_run(cfg.mlflow, args.variant, args.seed, pipeline_parent)


def run(cfg, ctx: StageContext) -> dict:
    import shutil

    import pandas as pd

    from rarl_core.compare import check_seed, train_grpo_unit
    from rarl_core.files import atomic_dir, write_json
    from rarl_core.tracking import log_history

    check_seed(cfg, ctx.args.seed)
    augmented = pd.read_parquet(require(Path(cfg.paths.augmented) / "train.parquet", "augment"))
    sft_model = require(cfg.paths.sft_model, "sft")
    work_dir = Path(cfg.paths.checkpoints) / "compare" / f"grpo-{ctx.variant}-{ctx.args.seed}"
    with atomic_dir(ctx.args.out) as tmp:
        summary, logs = train_grpo_unit(cfg, ctx.variant, ctx.args.seed, augmented, sft_model, tmp / "weights",
                                        work_dir)
        write_json(tmp / "train.json", summary)
    shutil.rmtree(work_dir, ignore_errors=True)
    log_history(logs, "train/")
    return {key: summary[key] for key in ("seconds", "tokens", "steps")}


def main(argv=None) -> int:
    return stage_main("compare_grpo", run, ("model", "grpo"), argv, per_variant=True, arguments=arguments,
                      tracked_as=tracked_as)


if __name__ == "__main__":
    raise SystemExit(main())
