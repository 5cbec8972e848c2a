"""Stage compare (compare/dvc.yaml, `rarl compare`): does RARL beat RL and SFT? Seeds, intervals, equal compute.

Runs the comparison of params.yaml `compare:` (rarl_core/compare.py says what and why): the SFT warm-up evaluated as
it is, then for each seed every GRPO variant and the SFT control, each trained and evaluated in turn. This stage's
MLflow run is the comparison's parent run (tagged rarl.kind = comparison): a nested run per model x seed holds its
training curves (logged after training, so that logging costs no training time), its `eval/<dataset>/<prompt>/...`
metrics and its predictions; the report and every number are logged to the parent. Files, in paths.compare:
compare.md, compare.html (plots embedded), results.json (every number, per-question scores included) and
summary.json (the headline, a DVC metrics file).
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

from rarl_core.config import ConfigError
from tasks.common import StageContext, numeric, require, stage_main

CLAIMED_VARIANTS = ("rl", "rarl")  # the paper's claims name conventional RL and RARL


def check_variants(cfg) -> None:
    if missing := [v for v in CLAIMED_VARIANTS if v not in cfg.grpo.variants]:
        raise ConfigError(f"compare: grpo.variants lacks {missing}: the paper's claims compare 'rl' (reasoning weight "
                          f"0) and 'rarl' (reasoning weight > 0); other variants are compared beside them")


def log_unit(unit: dict, logs: list[dict], predictions: dict) -> None:
    """Into the active (nested) MLflow run: the training logs per step, eval metrics, the predictions."""
    import mlflow
    from mlflow.entities import Metric

    from rarl_core.files import write_jsonl

    now = int(time.time() * 1000)
    points = [Metric(f"train/{key}", value, now, int(log["step"])) for log in logs
              for key, value in numeric({k: v for k, v in log.items() if k != "step"}).items()]
    client, run_id = mlflow.MlflowClient(), mlflow.active_run().info.run_id
    for start in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=points[start:start + 1000])
    diagnostics = {d: {p: c["diagnostics"] for p, c in per_p.items()} for d, per_p in unit["cells"].items()}
    mlflow.log_metrics(numeric(diagnostics, "eval/"))
    if unit["train"]:
        mlflow.log_metrics(numeric({k: v for k, v in unit["train"].items() if k != "curves"}, "train_summary/"))
    with tempfile.TemporaryDirectory() as tmp:
        for dataset, per_prompt in predictions.items():
            for prompt, records in per_prompt.items():
                write_jsonl(Path(tmp) / dataset / f"{prompt}.jsonl", records)
        mlflow.log_artifacts(tmp, "predictions")


def run(cfg, ctx: StageContext) -> dict:
    import mlflow
    import pandas as pd

    from rarl_core import compare
    from rarl_core.evaluate import baselines
    from rarl_core.files import atomic_file, write_json
    from rarl_core.prompts import load_templates
    from rarl_core.report import sections_markdown
    from rarl_core.tracking import child_run
    from rarl_core.evaluate import eval_sets

    started, cpu_started = time.perf_counter(), time.process_time()
    check_variants(cfg)
    augmented = pd.read_parquet(require(Path(cfg.paths.augmented) / "train.parquet", "augment"))
    sft_model = require(cfg.paths.sft_model, "sft")
    sets, templates = eval_sets(cfg), load_templates()
    parent = mlflow.active_run().info.run_id
    mlflow.set_tag("rarl.kind", "comparison")
    work = ctx.work_dir  # checkpoints/compare, kept only for these params and inputs (see `checkpointing`)
    units = []

    def unit_of(model: str, seed: int | None, train_unit) -> dict:
        """Train (train_unit() -> folder, summary, logs) and evaluate one model in its own nested run, or reuse its
        result from an earlier attempt of this comparison that was killed later on."""
        done = work / f"unit-{model}-{seed}.json"
        if done.is_file():
            unit = json.loads(done.read_text())
            print(f"{model} seed {seed}: finished in an earlier attempt, reused ({done})", flush=True)
        else:
            path, train, logs = train_unit()
            name = model if seed is None else f"{model} seed {seed}"
            tags = {"rarl.stage": "compare", "rarl.model": model, "rarl.seed": str(seed)}
            with child_run(cfg.mlflow, parent, name, tags):
                mlflow.log_params({"model": model, "seed": seed, **(train or {}).get("budget", {})})
                unit, predictions = compare.evaluate_unit(cfg, model, seed, path, sets, templates, train)
                log_unit(unit, logs, predictions)
            write_json(done, unit)
            unit = json.loads(done.read_text())  # as saved: a reused unit and a fresh one are the same data
            if path != sft_model:
                shutil.rmtree(Path(path).parent, ignore_errors=True)  # its weights: evaluated, no longer needed
        units.append(unit)
        return unit

    unit_of(compare.SFT, None, lambda: (sft_model, None, ()))
    for seed in cfg.compare.seeds:
        grpo_runs = []
        for variant in cfg.grpo.variants:
            folder = work / f"{variant}-{seed}"
            grpo_runs.append(unit_of(variant, seed, lambda: compare.train_grpo_unit(
                cfg, variant, seed, augmented, sft_model, folder))["train"])
        budget = compare.control_budget(cfg.compare.control, grpo_runs)
        unit_of(compare.CONTROL, seed, lambda: compare.train_control_unit(
            cfg, seed, budget, augmented, sft_model, work / f"control-{seed}"))

    design = compare.Design(list(cfg.grpo.variants), list(cfg.data.in_domain), list(cfg.data.unseen),
                            list(cfg.evaluate.prompts), cfg.evaluate.n_resamples)
    results = compare.analyse(units, design, baselines(sets))
    results["setup"] = {"seeds": list(cfg.compare.seeds), "control": cfg.compare.control,
                        "decoding": json.dumps(cfg.evaluate.decoding()), "judge": cfg.judge.label if cfg.compare.judge else "off",
                        "host": f"{platform.node()}, {platform.processor() or platform.machine()}"}
    results["wall_time_s"] = time.perf_counter() - started
    results["cpu_time_s"] = time.process_time() - cpu_started  # all threads: on a shared machine, the work done
    results["units"] = units
    out = Path(cfg.paths.compare)
    summary = compare.summary_metrics(results)
    write_json(out / "results.json", results)
    write_json(out / "summary.json", summary)
    for name, render in (("compare.md", compare.render_markdown), ("compare.html", compare.render_html)):
        with atomic_file(out / name) as handle:
            handle.write(render(results))
    for name in ("compare.md", "compare.html", "results.json", "summary.json"):
        mlflow.log_artifact(str(out / name), "compare")
    mlflow.set_tags({f"verdict/{k}": v["verdict"] for k, v in summary["claims"].items()})
    print(sections_markdown(compare.build_sections(results, figures=False)[:2]))
    print(f"Report: {out / 'compare.md'}, {out / 'compare.html'}")
    return summary


def checkpointing(cfg, variant=None):
    """A comparison killed part-way keeps every model it finished: each unit's result is saved in the work folder
    and reused, in the same MLflow run, when the comparison runs again with the same params and inputs."""
    inputs = [require(cfg.paths.prepared, "prepare"), require(Path(cfg.paths.augmented) / "train.parquet", "augment"),
              require(cfg.paths.sft_model, "sft")]
    depends_on = {s: getattr(cfg, s) for s in ("model", "sft", "grpo", "evaluate", "judge", "compare")}
    return Path(cfg.paths.checkpoints) / "compare", depends_on | {"sets": [cfg.data.in_domain, cfg.data.unseen]}, inputs


def main(argv=None) -> int:
    return stage_main("compare", run, ("compare", "model", "sft", "grpo", "evaluate"), argv,
                      checkpointing=checkpointing)


if __name__ == "__main__":
    raise SystemExit(main())
