"""The compare stage end to end on the tiny model: one seed, two GRPO steps per variant, 24 questions per set.

Asserts what a user relies on: every model trained and evaluated, the control stopped on its token budget, the three
claims read under each prompt, the report files written, and MLflow holding one comparison run with a nested run
per model x seed (training curves, eval metrics, predictions).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import yaml

from rarl_core.compare import CONTROL, REFUTED, SFT, SUPPORTED, UNRESOLVED
from rarl_core.config import load_config
from tasks import compare


def compare_params(workspace: dict, root: Path, **grpo) -> Path:
    """The workspace's params (its data and SFT model), with the comparison's outputs and MLflow store under root."""
    params = yaml.safe_load(Path(workspace["params"]).read_text())
    params["paths"] |= {"compare": str(root / "compare"), "checkpoints": str(root / "checkpoints")}
    params["mlflow"] |= {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "artifact_root": str(root / "artifacts")}
    params["grpo"] |= {"max_steps": 2, **grpo}
    params["compare"] = {"seeds": [0], "control": "tokens", "judge": True}
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_compare_stage_trains_evaluates_and_reports(sft_workspace, tmp_path):
    params = compare_params(sft_workspace, tmp_path)
    assert compare.main(["--params", str(params)]) == 0
    cfg = load_config(params)
    out = Path(cfg.paths.compare)
    results = json.loads((out / "results.json").read_text())

    assert [(u["model"], u["seed"]) for u in results["units"]] == [(SFT, None), ("rl", 0), ("rarl", 0), (CONTROL, 0)]
    rl, rarl, control = results["units"][1:]
    assert control["train"]["budget"] == {"tokens": (rl["train"]["tokens"] + rarl["train"]["tokens"]) // 2}
    assert control["train"]["tokens"] >= control["train"]["budget"]["tokens"] > 0 and control["train"]["steps"] >= 1
    assert "rewards/reasoning_reward/mean" in rarl["train"]["curves"]
    assert len(rl["cells"]["starter_b"]["reasoning"]["scores"]) == cfg.evaluate.max_questions

    claims = {(c["key"], c["prompt"]) for c in results["claims"]}
    assert claims == {(k, p) for k in ("rarl_vs_sft_in_domain", "rarl_vs_sft_unseen", "rarl_vs_rl_unseen")
                      for p in ("plain", "reasoning")}
    assert {c["verdict"] for c in results["claims"]} <= {SUPPORTED, REFUTED, UNRESOLVED}
    diagnostics = results["diagnostics"][CONTROL]["starter_a"]["reasoning"]
    assert diagnostics["format_rate"] is not None and diagnostics["judge_reasoning"] is not None
    assert (out / "compare.md").read_text().startswith("# Does RARL beat RL and SFT?")
    assert "data:image/png;base64," in (out / "compare.html").read_text()
    assert json.loads((out / "summary.json").read_text())["claims"]["rarl_vs_rl_unseen/reasoning"]["verdict"]
    assert not (Path(cfg.paths.checkpoints) / "compare").exists()

    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    (parent,) = mlflow.search_runs(experiment_names=[cfg.mlflow.experiment], output_format="list",
                                   filter_string="tags.`rarl.kind` = 'comparison'")
    assert parent.data.tags["verdict/rarl_vs_rl_unseen/reasoning"] in {SUPPORTED, REFUTED, UNRESOLVED}
    children = mlflow.search_runs(experiment_names=[cfg.mlflow.experiment], output_format="list",
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    by_name = {run.info.run_name: run for run in children}
    assert set(by_name) == {"sft", "rl seed 0", "rarl seed 0", "sft_control seed 0"}
    assert "train/reward" in by_name["rl seed 0"].data.metrics
    assert "eval/starter_b/reasoning/consistency_rate" in by_name["sft_control seed 0"].data.metrics
    client = mlflow.MlflowClient()
    assert {a.path for a in client.list_artifacts(by_name["rarl seed 0"].info.run_id, "predictions")} == {
        "predictions/starter_a", "predictions/starter_b"}
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "compare")} >= {"compare/compare.html"}


def test_compare_needs_rl_and_rarl(sft_workspace, tmp_path, capsys):
    params = compare_params(sft_workspace, tmp_path, variants={"rl": {"format": 1.0, "accuracy": 1.0}})
    assert compare.main(["--params", str(params)]) == 1
    assert "grpo.variants lacks ['rarl']" in capsys.readouterr().err


def test_compare_is_its_own_dvc_pipeline(project, monkeypatch):
    """`dvc repro compare/dvc.yaml` plans the data, the warm-up and the comparison, and plain `dvc repro` (the quick
    start) does not include it; the stage runs from the project root on the root params.yaml."""
    from dvc.repo import Repo
    from dvc.repo.reproduce import collect_stages, get_active_graph, plan_repro

    monkeypatch.chdir(project)  # DVC names stages relative to the working directory
    with Repo(str(project)) as repo:
        graph = get_active_graph(repo.index.graph)

        def planned(target: str) -> list[str]:
            return [s.addressing for s in plan_repro(graph, collect_stages(repo, [target]))]

        assert planned("compare/dvc.yaml") == ["prepare", "augment", "tiny_model", "sft", "compare/dvc.yaml:compare"]
        assert not any("compare" in s for s in planned("dvc.yaml"))
        (stage,) = [s for s in repo.index.stages if s.addressing == "compare/dvc.yaml:compare"]
        assert Path(stage.wdir) == project and stage.cmd == "python -m tasks.compare"
        assert {str(o) for o in stage.outs} == {f"reports/compare/{n}" for n in
                                                 ("compare.md", "compare.html", "results.json", "summary.json")}


def test_a_comparison_stopped_part_way_keeps_its_finished_models(sft_workspace, tmp_path, monkeypatch):
    """The control of seed 0 crashes after SFT, RL and RARL were trained and evaluated; the next run reuses those
    three (GRPO is not trained again), finishes the control, and everything is in the one comparison run."""
    import pytest

    from rarl_core import compare as library

    params = compare_params(sft_workspace, tmp_path)
    cfg = load_config(params)
    real_control = library.train_control_unit

    def crash(*args, **kwargs):
        raise RuntimeError("the machine went away")

    monkeypatch.setattr(library, "train_control_unit", crash)
    with pytest.raises(RuntimeError, match="went away"):
        compare.main(["--params", str(params)])
    saved = sorted(p.name for p in (Path(cfg.paths.checkpoints) / "compare").glob("unit-*.json"))
    assert saved == ["unit-rarl-0.json", "unit-rl-0.json", "unit-sft-None.json"]

    monkeypatch.setattr(library, "train_control_unit", real_control)
    monkeypatch.setattr(library, "train_grpo_unit", lambda *a, **k: pytest.fail("a finished GRPO unit was retrained"))
    assert compare.main(["--params", str(params)]) == 0
    results = json.loads((Path(cfg.paths.compare) / "results.json").read_text())
    assert [(u["model"], u["seed"]) for u in results["units"]] == [(SFT, None), ("rl", 0), ("rarl", 0), (CONTROL, 0)]
    assert not (Path(cfg.paths.checkpoints) / "compare").exists()

    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    (parent,) = mlflow.search_runs(experiment_names=[cfg.mlflow.experiment], output_format="list",
                                   filter_string="tags.`rarl.kind` = 'comparison'")
    assert parent.info.status == "FINISHED"
    children = mlflow.search_runs(experiment_names=[cfg.mlflow.experiment], output_format="list",
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(r.info.run_name for r in children) == ["rarl seed 0", "rl seed 0", "sft", "sft_control seed 0"]
