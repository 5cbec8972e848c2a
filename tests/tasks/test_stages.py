"""Each stage on the tiny model, in one workspace: each test asserts that something real changed.

The stages share a module-scoped workspace (a later stage needs the earlier outputs). Each test asks for what it
needs with `ensure`, which runs a stage (and what that stage needs) once per workspace, through the same `main()`
that `python -m tasks.<stage>` runs; so any test runs alone, or in any order, and inspects files and the MLflow
store.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from rarl_core.config import load_config
from rarl_core.schema import COLUMNS
from tests.conftest import SMALL, small_params
from tasks import augment, evaluate, grpo, judge, merge, prepare, report, sft, tiny_model


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    params = small_params(root, evaluate={**SMALL["evaluate"], "image_controls": ["blank", "shuffled"]})
    return {"root": root, "params": params, "cfg": load_config(params), "done": set()}


def run(module, ws, *args: str) -> None:
    assert module.main(["--params", str(ws["params"]), *args]) == 0


STAGES = {  # name: (module, arguments, the stages it needs)
    "prepare": (prepare, [], []), "augment": (augment, [], ["prepare"]), "tiny_model": (tiny_model, [], ["augment"]),
    "sft": (sft, [], ["tiny_model"]),
    **{f"grpo@{v}": (grpo, ["--variant", v], ["sft"]) for v in ("rl", "rarl")},
    **{f"merge@{v}": (merge, ["--variant", v], [f"grpo@{v}"]) for v in ("rl", "rarl")},
    "evaluate": (evaluate, [], ["merge@rl", "merge@rarl"]), "judge": (judge, [], ["evaluate"]),
    "report": (report, [], ["judge"]),
}


def ensure(ws, name: str) -> None:
    """Run stage `name` in the workspace unless it already ran there, after what it needs."""
    module, args, needs = STAGES[name]
    for need in needs:
        ensure(ws, need)
    if name not in ws["done"]:
        run(module, ws, *args)
        ws["done"].add(name)


def runs(ws, name: str):
    mlflow.set_tracking_uri(ws["cfg"].mlflow.tracking_uri)
    return mlflow.search_runs(experiment_names=[ws["cfg"].mlflow.experiment],
                              filter_string=f"attributes.run_name = '{name}'", output_format="list")


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


def test_prepare_writes_schema_and_cards(ws):
    ensure(ws, "prepare")
    prepared = Path(ws["cfg"].paths.prepared)
    for name in ("starter_a", "starter_b"):
        frame = pd.read_parquet(prepared / name / "data.parquet")
        assert list(frame.columns) == list(COLUMNS)
        card = json.loads((prepared / name / "card.json").read_text())
        assert card["rows"] == len(frame) > 100
        assert sum(card["by_split"].values()) == len(frame)
        assert all((prepared / name / "images" / img).is_file() for img in frame["image"].unique())
    assert set(pd.read_parquet(prepared / "starter_b" / "data.parquet")["split"]) == {"test"}
    (stage_run,) = runs(ws, "prepare")
    assert stage_run.data.params["data.image_size"] == "112"
    assert stage_run.data.tags["mlflow.parentRunId"]


def test_augment_styles(ws):
    ensure(ws, "augment")
    rows = pd.read_parquet(Path(ws["cfg"].paths.augmented) / "train.parquet")
    train = pd.read_parquet(Path(ws["cfg"].paths.prepared) / "starter_a" / "data.parquet").query("split == 'train'")
    assert len(rows) == len(train)  # one variant per question in the small params
    assert set(rows["style"]) >= {"explain", "short", "open"}
    assert rows["target"].str.match(r"^<think>.+</think><answer>.+</answer>$").all()
    assert (rows.query("style == 'multiple_choice'")["answer_type"] == "multiple_choice").all()


def test_tiny_model_is_a_qwen2_vl_folder(ws):
    ensure(ws, "tiny_model")
    from transformers import AutoConfig, AutoProcessor

    folder = ws["cfg"].paths.tiny_model
    assert AutoConfig.from_pretrained(folder).model_type == "qwen2_vl"
    processor = AutoProcessor.from_pretrained(folder)
    assert processor.tokenizer.convert_tokens_to_ids("<|image_pad|>") != processor.tokenizer.unk_token_id
    assert "<|im_start|>" in processor.tokenizer.chat_template


def test_sft_moves_weights_and_logs_losses(ws):
    ensure(ws, "sft")
    cfg = ws["cfg"]
    before, after = weights(Path(cfg.paths.tiny_model)), weights(Path(cfg.paths.sft_model))
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(moved) > len(before) // 2
    summary = json.loads((Path(cfg.paths.metrics) / "sft.json").read_text())
    assert summary["last_loss"] < summary["first_loss"] / 2
    (stage_run,) = runs(ws, "sft")
    history = mlflow.MlflowClient().get_metric_history(stage_run.info.run_id, "loss")
    assert len(history) >= 4  # TRL's report_to=mlflow logged into the stage run
    assert any(a.path == "model" for a in mlflow.MlflowClient().list_artifacts(stage_run.info.run_id))


@pytest.mark.parametrize("variant", ["rl", "rarl"])
def test_grpo_trains_adapter_and_logs_every_reward(ws, variant):
    ensure(ws, f"grpo@{variant}")
    cfg = ws["cfg"]
    adapter = weights(Path(cfg.paths.adapters) / variant)
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: non-zero means it trained
    assert not any("visual" in k for k in adapter)  # the vision tower stays frozen
    (stage_run,) = runs(ws, f"grpo: {variant}")
    metrics = stage_run.data.metrics
    for name in ("format_reward", "accuracy_reward", "reasoning_reward"):
        assert f"rewards/{name}/mean" in metrics  # logged even where its weight is 0 (rl)
    assert stage_run.data.params["grpo.variants." + variant + ".reasoning"] == str(cfg.grpo.variants[variant]["reasoning"])
    summary = json.loads((Path(cfg.paths.metrics) / f"grpo-{variant}.json").read_text())
    assert summary["format_first"] > 0  # the SFT warm-up taught the format, so rewards are not all zero


def test_unknown_variant_is_rejected(ws, capsys):
    assert grpo.main(["--params", str(ws["params"]), "--variant", "ppo"]) == 2
    assert "grpo.variants" in capsys.readouterr().err


@pytest.mark.parametrize("variant", ["rl", "rarl"])
def test_merge_gives_plain_transformers_model(ws, variant):
    ensure(ws, f"merge@{variant}")
    from transformers import AutoModelForImageTextToText

    cfg = ws["cfg"]
    folder = Path(cfg.paths.merged) / variant
    merged = AutoModelForImageTextToText.from_pretrained(folder)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    before, after = weights(Path(cfg.paths.sft_model)), weights(folder)
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)


def test_evaluate_every_model_dataset_prompt(ws):
    ensure(ws, "evaluate")
    cfg = ws["cfg"]
    result = json.loads((Path(cfg.paths.metrics) / "eval.json").read_text())
    assert set(result["models"]) == {"base", "sft", "rl", "rarl"}
    for per_set in result["models"].values():
        assert set(per_set) == {"starter_a", "starter_b"}
        for per_prompt in per_set.values():
            assert set(per_prompt) == {"plain", "reasoning"}
            assert all(0 <= m["accuracy"] <= 1 and m["n"] == 24 for m in per_prompt.values())
            assert all(m["accuracy_ci_low"] <= m["accuracy"] <= m["accuracy_ci_high"] for m in per_prompt.values())
            assert all(m["accuracy_by_modality"] and m["seconds_per_completion"] > 0 for m in per_prompt.values())
    assert result["models"]["sft"]["starter_a"]["reasoning"]["format_rate"] > 0.5
    assert 0 < result["baselines"]["starter_a"]["majority"] < 1 and 0 < result["baselines"]["starter_a"]["blind_prior"] < 1
    cell = result["models"]["sft"]["starter_a"]["reasoning"]
    assert set(cell["controls"]) == {"blank", "shuffled"} and "llava_med/closed_accuracy" in cell["published"]
    assert (Path(cfg.paths.predictions) / "sft" / "starter_a" / "controls" / "blank" / "reasoning.jsonl").is_file()
    sft = result["models"]["sft"]
    assert result["gaps"]["sft"]["plain"] == pytest.approx(sft["starter_b"]["plain"]["accuracy"]
                                                           - sft["starter_a"]["plain"]["accuracy"])
    assert set(result["paired"]) == {"rl-vs-sft", "rarl-vs-sft", "rarl-vs-rl"}  # trained models, base left out
    pair = result["paired"]["rl-vs-sft"]["starter_b"]["reasoning"]
    assert pair["ci_low"] <= pair["diff"] <= pair["ci_high"]
    assert pair["diff"] == pytest.approx(result["models"]["rl"]["starter_b"]["reasoning"]["accuracy"]
                                         - sft["starter_b"]["reasoning"]["accuracy"])
    for model in ("base", "sft", "rl", "rarl"):
        for dataset in ("starter_a", "starter_b"):
            for prompt in ("plain", "reasoning"):
                assert (Path(cfg.paths.predictions) / model / dataset / f"{prompt}.jsonl").is_file()
    preds = Path(cfg.paths.predictions) / "sft" / "starter_a" / "plain.jsonl"
    first = json.loads(preds.read_text().splitlines()[0])
    assert {"id", "question", "answer", "completion", "parsed_answer", "correct", "seconds"} <= set(first)
    for variant in ("base", "sft", "rl", "rarl"):
        (eval_run,) = runs(ws, f"eval: {variant}")
        assert "eval/starter_b/reasoning/accuracy" in eval_run.data.metrics
        assert "eval/starter_a/plain/accuracy_ci_low" in eval_run.data.metrics
        assert eval_run.data.params["decoding"] == "greedy"


def test_report_table_and_parent_run_closed(ws):
    ensure(ws, "judge")  # the offline rubric judge (shipped default), between evaluate and report
    cfg = ws["cfg"]
    judged = json.loads((Path(cfg.paths.metrics) / "judge.json").read_text())
    assert judged["judge"] == "rubric (offline)" and set(judged["models"]) == {"base", "sft", "rl", "rarl"}
    (sft_eval,) = runs(ws, "eval: sft")
    assert 0 <= sft_eval.data.metrics["judge/starter_b/reasoning/correctness"] <= 1
    ensure(ws, "report")
    text = Path(cfg.paths.report).read_text()
    assert "| sft | starter_a | in-domain | plain |" in text
    assert "Generalisation gap" in text and "Paired differences" in text and "NOT an LLM judge" in text
    page = Path(cfg.paths.report_html).read_text()
    assert page.count("data:image/png;base64,") == 4 and "http://" not in page and "https://" not in page
    plots = Path(cfg.paths.plots)
    assert {p.name for p in plots.iterdir()} == {"accuracy.csv", "gap.csv", "judge.csv", "rewards"}
    rewards = pd.read_csv(plots / "rewards" / "rarl.csv")
    assert len(rewards) == cfg.grpo.max_steps and {"step", "reward", "format", "accuracy", "reasoning"} <= set(rewards)
    (stage_run,) = runs(ws, "report")
    champion = stage_run.data.tags["rarl.champion"]
    assert champion in {"sft", "rl", "rarl"} and f"Champion: `{champion}`" in text
    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name = '{cfg.report.registered_model}'")
    assert sorted(v.tags["rarl.model"] for v in versions) == ["rarl", "rl", "sft"]
    assert client.get_model_version_by_alias(cfg.report.registered_model, "champion").tags["rarl.model"] == champion
    parent = mlflow.get_run(stage_run.data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FINISHED"
    children = mlflow.search_runs(experiment_names=[cfg.mlflow.experiment], output_format="list",
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert {r.info.run_name for r in children} >= {"prepare", "sft", "grpo: rl", "grpo: rarl", "merge: rl",
                                                    "merge: rarl", "evaluate", "judge", "report", "eval: base",
                                                    "eval: sft", "eval: rl", "eval: rarl"}
    assert {a.path for a in client.list_artifacts(stage_run.info.run_id, "report")} >= {
        "report/report.md", "report/report.html", "report/accuracy.csv"}


def test_missing_input_fails_before_work_naming_the_file(tmp_path, capsys):
    params = small_params(tmp_path)
    assert sft.main(["--params", str(params)]) == 1
    err = capsys.readouterr().err
    assert "augment" in err and "train.parquet" in err
    assert not Path(load_config(params).paths.sft_model).exists()


def test_bad_params_fail_with_the_key_named(tmp_path, capsys):
    params = small_params(tmp_path, grpo={"batch_size": 6, "num_generations": 4})
    assert grpo.main(["--params", str(params), "--variant", "rl"]) == 2
    assert "grpo.batch_size" in capsys.readouterr().err
    params.write_text(params.read_text().replace("learning_rate", "lerning_rate", 1))
    assert sft.main(["--params", str(params)]) == 2
    assert "lerning_rate" in capsys.readouterr().err
