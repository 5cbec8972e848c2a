"""Stage compare (compare/dvc.yaml, the last of `rarl compare`): does RARL beat RL and SFT? Seeds, intervals,
equal compute.

Reads every evaluated unit (`<evals>/**/unit.json`, written by the compare_eval stages: the SFT warm-up, and per seed
each GRPO variant and the SFT control) and writes, in paths.compare: compare.md, compare.html (plots embedded),
results.json (every number, per-question scores included) and summary.json (the headline, a DVC metrics file). Its
MLflow run is the comparison's run (tagged rarl.kind = comparison, nested under the pipeline's parent, holding a
nested run per unit): the report and every number go there, the verdicts as tags.
"""

from __future__ import annotations

from pathlib import Path

from tasks.common import StageContext, stage_main


def arguments(parser) -> None:
    parser.add_argument("--evals", type=Path, required=True, help="folder of the evaluated units (**/unit.json)")


def tracked_as(cfg, args, pipeline_parent: str):
    from rarl_core.tracking import COMPARISON_TAGS, Tracked, comparison_run_id

    return Tracked(pipeline_parent, "compare", COMPARISON_TAGS, comparison_run_id(cfg.mlflow, pipeline_parent))


def read_units(evals: Path, models: list[str]) -> list[dict]:
    """Every unit.json under `evals`, in report order: the SFT warm-up, then per seed the models in `models` order."""
    import json

    units = [json.loads(path.read_text()) for path in sorted(evals.rglob("unit.json"))]
    if not units:
        raise FileNotFoundError(f"{evals} holds no unit.json: run the compare_eval stages first (rarl compare)")
    order = {model: i for i, model in enumerate(models)}
    return sorted(units, key=lambda u: (u["seed"] is not None, u["seed"] or 0, order.get(u["model"], len(order))))


def run(cfg, ctx: StageContext) -> dict:
    import json
    import platform

    import mlflow

    from rarl_core import compare_analysis as analysis
    from rarl_core import compare_report
    from rarl_core.compare import check_seed
    from rarl_core.evaluate import baselines, eval_sets, training_rows
    from rarl_core.files import atomic_file, write_json
    from rarl_core.pages import sections_markdown
    from rarl_core.tracking import end_pipeline_run

    check_seed(cfg, None)
    units = read_units(ctx.args.evals, ["sft", *cfg.grpo.variants, "sft_control"])
    analysis.check_complete(cfg, units)
    design = analysis.Design(list(cfg.grpo.variants), list(cfg.data.in_domain), list(cfg.data.unseen),
                            list(cfg.evaluate.prompts), cfg.evaluate.n_resamples)
    results = analysis.analyse(units, design, baselines(eval_sets(cfg), training_rows(cfg)))
    results["setup"] = {"seeds": list(cfg.compare.seeds), "control": cfg.compare.control,
                        "decoding": json.dumps(cfg.evaluate.decoding()),
                        "judge": cfg.judge.label if cfg.compare.judge else "off",
                        "host": f"{platform.node()}, {platform.processor() or platform.machine()}"}
    results |= analysis.compute_time(units)
    results["units"] = units
    out = Path(cfg.paths.compare)
    summary = analysis.summary_metrics(results)
    write_json(out / "results.json", results)
    write_json(out / "summary.json", summary)
    for name, render in (("compare.md", compare_report.render_markdown), ("compare.html", compare_report.render_html)):
        with atomic_file(out / name) as handle:
            handle.write(render(results))
    for name in ("compare.md", "compare.html", "results.json", "summary.json"):
        mlflow.log_artifact(str(out / name), "compare")
    mlflow.set_tags({f"verdict/{k}": v["verdict"] for k, v in summary["claims"].items()})
    print(sections_markdown(compare_report.build_sections(results, figures=False)[:2]))
    print(f"Report: {out / 'compare.md'}, {out / 'compare.html'}")
    import os

    from rarl_core.tracking import PARENT_ENV

    if not os.environ.get(PARENT_ENV):  # plain `dvc repro`: the last stage closes the parent run it found
        end_pipeline_run(cfg.mlflow, ctx.parent_run_id)
    return summary


def main(argv=None) -> int:
    return stage_main("compare", run, ("compare", "evaluate"), argv, arguments=arguments, tracked_as=tracked_as)


if __name__ == "__main__":
    raise SystemExit(main())
