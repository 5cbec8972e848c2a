"""Stage compare_eval_* (compare/dvc.yaml): one model of `rarl compare` evaluated on every set x prompt, with the
`evaluate:` settings (the evaluate stage's generation and scoring) and the `judge:` judge when compare.judge is on.

`--model sft --weights <sft_model>` evaluates the warm-up; `--model <variant|sft_control> --seed S --weights
<unit>/weights --train <unit>/train.json` a trained unit. Writes `<out>/unit.json` (model, seed, training summary,
per-question scores and diagnostics of every cell: what the analysis stage reads) and `<out>/predictions/`. Logs
into the unit's MLflow run (opened by its training stage), or a new "sft" run under the comparison's.
"""

from __future__ import annotations

from pathlib import Path

from tasks.common import StageContext, numeric, stage_main


def arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="sft, a GRPO variant, or sft_control")
    parser.add_argument("--seed", type=int, default=None, help="the unit's training seed (none for sft)")
    parser.add_argument("--weights", type=Path, required=True, help="model folder, or a PEFT adapter folder")
    parser.add_argument("--train", type=Path, default=None, help="the unit's train.json (trained units)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (unit.json, predictions/)")


def tracked_as(cfg, args, pipeline_parent: str):
    from rarl_core.tracking import compare_unit_run

    return compare_unit_run(cfg.mlflow, args.model, args.seed, pipeline_parent)


def run(cfg, ctx: StageContext) -> dict:
    import json

    import mlflow

    from rarl_core.compare import check_unit
    from rarl_core.compare_analysis import evaluate_unit
    from rarl_core.evaluate import eval_sets
    from rarl_core.files import atomic_dir, write_json, write_jsonl
    from rarl_core.prompts import load_templates

    args = ctx.args
    check_unit(cfg, args.model, args.seed)
    if not args.weights.exists():
        raise FileNotFoundError(f"{args.weights} is missing: run the stage that trains {args.model} first")
    train = json.loads(args.train.read_text()) if args.train else None
    unit, predictions = evaluate_unit(cfg, args.model, args.seed, args.weights, eval_sets(cfg), load_templates(), train)
    with atomic_dir(args.out) as tmp:
        write_json(tmp / "unit.json", unit)
        for dataset, per_prompt in predictions.items():
            for prompt, by_control in per_prompt.items():
                for control, records in by_control.items():
                    folder = tmp / "predictions" / dataset / (f"controls/{control}" if control else "")
                    write_jsonl(folder / f"{prompt}.jsonl", records)
    mlflow.log_params({"model": args.model, "seed": args.seed, **cfg.evaluate.decoding()})
    diagnostics = {d: {p: c["diagnostics"] for p, c in per_p.items()} for d, per_p in unit["cells"].items()}
    mlflow.log_metrics(numeric(diagnostics, "eval/"))
    mlflow.log_artifacts(str(args.out / "predictions"), "predictions")
    return {"eval_seconds": unit["eval_seconds"]}


def main(argv=None) -> int:
    return stage_main("compare_eval", run, ("model", "evaluate"), argv, arguments=arguments, tracked_as=tracked_as)


if __name__ == "__main__":
    raise SystemExit(main())
