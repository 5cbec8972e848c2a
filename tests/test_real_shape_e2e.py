"""Every stage at Qwen2-VL-2B-Instruct's real widths, vocabulary (151,936, tied embeddings), tokenizer, chat template
and 256-token images, run the way a user runs it: `rarl run --profile profiles/real-shape-cpu.yaml` (a DVC
experiment) in a fresh git copy of the project, then, since GRPO's rewards are all zero on random weights (no
completion writes the tags, so the adapter cannot move), a GRPO run on the pipeline's own SFT model with a reward
that random weights do move, and its merge checked.

What the test cuts to fit CI is counts, never shapes: one text layer and one vision block (the profile has two),
one step each, one GRPO variant, one question per set, one prompt, one image control (blank: a grey picture of the
same size, so the same 256 image tokens), four new tokens, 200 bootstrap resamples, and no copies of the model
folders into MLflow's artifact store (mlflow.log_models). Widths, vocabulary, tokenizer, tied
embeddings, image size and bfloat16 (the profile's dtype) are the profile's.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import copy_project, venv_env

GIT = ["git", "-c", "user.email=t@rarl.local", "-c", "user.name=rarl tests"]
VOCAB = 151936
IMAGE_TOKENS = 256  # 448x448 (the profile's min_pixels = max_pixels) / 28^2
ONE_VARIANT = {"rarl": {"format": 1.0, "accuracy": 1.0, "reasoning": 1.0}}
# `-S` overrides after the profile's own values: counts only (see the module docstring).
CUTS = ["tiny_model.num_layers=1", "tiny_model.vision_depth=1", "sft.max_steps=1", "sft.batch_size=1",
        "grpo.max_steps=1", "grpo.max_completion_length=4", "evaluate.max_questions=1", "evaluate.batch_size=1",
        "evaluate.max_new_tokens=4", "evaluate.prompts=[reasoning]", "evaluate.image_controls=[blank]",
        "evaluate.n_resamples=200", "mlflow.log_models=false"]


def mlflow_metrics(root: Path, run_name: str) -> dict[str, float]:
    """The metrics MLflow holds for the run named `run_name` (the merge stage reports only there)."""
    with contextlib.closing(sqlite3.connect(root / "mlflow" / "mlflow.db")) as db:
        rows = db.execute("select m.key, m.value from metrics m join runs r on m.run_uuid = r.run_uuid "
                          "where r.name = ?", (run_name,)).fetchall()
    return dict(rows)


@pytest.fixture(scope="module")
def real_shape_run(tmp_path_factory):
    """The pipeline, run once: `rarl run --profile profiles/real-shape-cpu.yaml -S <cuts>` in a git copy whose
    params.yaml keeps one GRPO variant (a key `-S` cannot remove)."""
    root = copy_project(tmp_path_factory.mktemp("real-shape"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["grpo"]["variants"] = ONE_VARIANT
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run([*GIT, "commit", "-qam", "one GRPO variant"], cwd=root, check=True)
    cmd = [sys.executable, "-m", "rarl.cli", "run", "--profile", "profiles/real-shape-cpu.yaml",
           *(arg for cut in CUTS for arg in ("-S", cut))]
    done = subprocess.run(cmd, cwd=root, env=venv_env(), capture_output=True, text=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    return root


@pytest.mark.slow
def test_every_stage_runs_at_real_shapes(real_shape_run):
    root = real_shape_run
    base = json.loads((root / "models" / "tiny-qwen2-vl" / "config.json").read_text())
    text, vision = base["text_config"], base["vision_config"]
    assert (text["vocab_size"], text["hidden_size"], text["intermediate_size"]) == (VOCAB, 1536, 8960)
    assert (text["num_attention_heads"], text["num_key_value_heads"], text["num_hidden_layers"]) == (12, 2, 1)
    assert (vision["embed_dim"], vision["num_heads"], vision["depth"]) == (1280, 16, 1)
    assert base["tie_word_embeddings"] is True

    sft = json.loads((root / "reports" / "metrics" / "sft.json").read_text())
    assert sft["global_step"] == 1 and sft["dropped_too_long"] == 0
    # the loss of a random model is about ln(vocabulary): 11.9 over 151,936 tokens (6.4 over the tiny 600)
    assert abs(sft["first_loss"] - math.log(VOCAB)) < 1.5, sft
    assert (root / "models" / "sft" / "adapter" / "adapter_config.json").is_file()  # LoRA, merged before saving

    grpo = json.loads((root / "reports" / "metrics" / "grpo-rarl.json").read_text())
    assert grpo["global_step"] == 1 and grpo["dropped_too_long"] == 0
    merge = mlflow_metrics(root, "merge: rarl")
    # Random weights never write the tags, so every reward is 0, every advantage 0 and LoRA's B stays 0: the merge
    # is exact and the adapter has no effect. That it says so is checked here; a merge of a moved adapter is
    # checked by the next test.
    assert grpo["reward_first"] == 0.0 and merge["merge/adapter_max_logit_effect"] == 0.0, (grpo, merge)
    assert merge["merge/merge_max_logit_diff"] == 0.0

    evaluation = json.loads((root / "reports" / "metrics" / "eval.json").read_text())
    assert set(evaluation["models"]) == {"base", "sft", "rarl"}
    for model in ("base", "sft", "rarl"):
        for dataset in ("starter_a", "starter_b"):
            folder = root / "reports" / "predictions" / model / dataset
            for predictions in (folder / "reasoning.jsonl", folder / "controls" / "blank" / "reasoning.jsonl"):
                [record] = [json.loads(line) for line in predictions.open()]
                assert 0 < record["completion_tokens"] <= 4, (predictions, record)
    assert (root / "reports" / "judge").is_dir()
    assert (root / "reports" / "report.md").read_text().startswith("# RARL comparison")


@pytest.mark.slow
def test_grpo_moves_and_merge_holds_at_real_shapes(real_shape_run, tmp_path, monkeypatch):
    """GRPO-LoRA on the pipeline's real-shape SFT model with a reward random weights can move (shorter completions
    score higher, as in tests/rarl_core/test_grpo.py): the adapter moves, and merging it into the bfloat16 model
    keeps its effect (the merged logits differ from the adapter's by bfloat16 rounding, far less than the effect)."""
    import dataclasses

    import pandas as pd

    from rarl_core.config import load_config
    from rarl_core.grpo import train_grpo
    from rarl_core.merge import merge_adapter
    from tests.rarl_core.test_grpo import brevity

    root = real_shape_run
    monkeypatch.chdir(root)  # the augmented rows name their images relative to the project
    cfg = load_config(root / "params.yaml")
    grpo = dataclasses.replace(cfg.grpo, max_steps=1, learning_rate=1e-2, num_generations=2, batch_size=2,
                               max_completion_length=4, variants={"short": {"format": 1.0}})
    cfg = dataclasses.replace(cfg, grpo=grpo)
    rows = pd.read_parquet(root / "data" / "augmented" / "train.parquet").head(1)
    sft_model = root / "models" / "sft"
    metrics = train_grpo(cfg, "short", rows, sft_model, tmp_path / "adapter", tmp_path / "work", [],
                         reward_funcs={"format": brevity})
    assert metrics["global_step"] == 1
    merged = merge_adapter(cfg, sft_model, tmp_path / "adapter", tmp_path / "merged")
    assert merged["adapter_max_logit_effect"] > 0.05, merged
    assert merged["merge_max_logit_diff"] < 0.25 * merged["adapter_max_logit_effect"], merged
    assert (tmp_path / "merged" / "config.json").is_file()
