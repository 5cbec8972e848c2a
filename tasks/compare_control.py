"""Stage compare_control@<seed> (compare/dvc.yaml): the SFT control of one seed, the warm-up continued with its own
SFT recipe for the compute of that seed's GRPO runs (compare.control: the same tokens, or the same seconds).

Reads `<grpo>/<variant>/train.json` of every GRPO variant of the seed; writes `<out>/weights` (the model) and
`<out>/train.json` (with the budget). Its MLflow run, "sft_control seed <seed>", is nested under the comparison's.
"""

from __future__ import annotations

from pathlib import Path

from tasks.common import StageContext, require, stage_main


def arguments(parser) -> None:
    parser.add_argument("--seed", type=int, required=True, help="training seed, one of compare.seeds")
    parser.add_argument("--grpo", type=Path, required=True, help="this seed's GRPO units (<variant>/train.json)")
    parser.add_argument("--out", type=Path, required=True, help="the unit's folder (weights/, train.json)")


def tracked_as(cfg, args, pipeline_parent: str):
    from rarl_core.compare import CONTROL
    from rarl_core.tracking import compare_unit_run

    return compare_unit_run(cfg.mlflow, CONTROL, args.seed, pipeline_parent)


def run(cfg, ctx: StageContext) -> dict:
    import json
    import shutil

    import pandas as pd

    from rarl_core.compare import check_seed, control_budget, train_control_unit
    from rarl_core.files import atomic_dir, write_json
    from rarl_core.tracking import log_history

    check_seed(cfg, ctx.args.seed)
    grpo_runs = [json.loads(require(ctx.args.grpo / variant / "train.json", f"compare_grpo@{variant}-{ctx.args.seed}")
                            .read_text()) for variant in cfg.grpo.variants]
    budget = control_budget(cfg.compare.control, grpo_runs)
    augmented = pd.read_parquet(require(Path(cfg.paths.augmented) / "train.parquet", "augment"))
    sft_model = require(cfg.paths.sft_model, "sft")
    work_dir = Path(cfg.paths.checkpoints) / "compare" / f"control-{ctx.args.seed}"
    with atomic_dir(ctx.args.out) as tmp:
        summary, logs = train_control_unit(cfg, ctx.args.seed, budget, augmented, sft_model, tmp / "weights", work_dir)
        write_json(tmp / "train.json", summary)
    shutil.rmtree(work_dir, ignore_errors=True)
    log_history(logs, "train/")
    import mlflow

    mlflow.log_params({f"budget.{key}": value for key, value in budget.items()})
    return {key: summary[key] for key in ("seconds", "tokens", "steps")}


def main(argv=None) -> int:
    return stage_main("compare_control", run, ("model", "sft", "compare"), argv, arguments=arguments,
                      tracked_as=tracked_as)


if __name__ == "__main__":
    raise SystemExit(main())
