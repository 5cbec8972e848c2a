"""GRPO step cost of our stage vs a bare TRL GRPOTrainer script: same tiny model, data, rewards and config.

Our stage adds dataset building, the too-long filter, checkpointing and LoRA set-up around TRL; the question is
whether that costs anything per step. Both sides run interleaved (ours, bare, ours, bare, ...) in one process so
machine noise hits both; the figure is the ratio of median seconds per step (goal: <= 1.05).

    python benchmarks/grpo_overhead.py [--steps 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import sys
import tempfile
from datetime import date
from pathlib import Path

from _common import spread, write_result  # benchmarks/_common.py


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_workspace(root: Path, sft_steps: int) -> Path:
    """prepare -> augment -> tiny_model -> sft on the shipped params, stores under `root`; returns the params file."""
    import yaml

    from tasks import augment, prepare, sft, tiny_model

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["paths"] = {k: str(root / v) for k, v in params["paths"].items()}
    params["model"]["name_or_path"] = params["paths"]["tiny_model"]
    params["mlflow"].update(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=str(root / "artifacts"))
    params["sft"].update(max_steps=sft_steps, batch_size=16)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    for stage in (prepare, augment, tiny_model, sft):
        assert stage.main(["--params", str(path)]) == 0, stage.__name__
    return path


def run_ours(cfg, rows, work: Path) -> float:
    """Seconds per step of rarl_core.grpo.train_grpo (the function the grpo stage runs)."""
    from rarl_core.grpo import train_grpo

    metrics = train_grpo(cfg, "rl", rows, Path(cfg.paths.sft_model), work / "adapter", work / "ckpt", [])
    return metrics["train_runtime_s"] / cfg.grpo.max_steps


def run_bare(cfg, rows, work: Path) -> float:
    """Seconds per step of a plain TRL script, written the way TRL's VLM GRPO examples are."""
    from datasets import Dataset, Image
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText
    from trl import GRPOConfig, GRPOTrainer

    from rarl_core.modeling import load_processor
    from rarl_core.rewards import accuracy_reward, format_reward, reasoning_reward

    g = cfg.grpo
    processor = load_processor(cfg.paths.sft_model, cfg.model.min_pixels, cfg.model.max_pixels)
    model = AutoModelForImageTextToText.from_pretrained(cfg.paths.sft_model)
    data = Dataset.from_dict({
        "image": list(rows["image_path"]),
        "prompt": [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": t}]}]
                   for t in rows["prompt_text"]],
        "answer": list(rows["answer"]),
        "answer_type": list(rows["answer_type"]),
        "choices": [[str(c) for c in cs] for cs in rows["choices"]],
        "question": list(rows["question"]),
    }).cast_column("image", Image())
    args = GRPOConfig(
        output_dir=str(work / "bare"), max_steps=g.max_steps, per_device_train_batch_size=g.batch_size,
        num_generations=g.num_generations, max_completion_length=g.max_completion_length,
        temperature=g.temperature, beta=g.beta, loss_type=g.loss_type, learning_rate=g.learning_rate,
        lr_scheduler_type=g.lr_scheduler, reward_weights=[1.0, 1.0, 0.0], logging_steps=g.logging_steps,
        seed=g.seed, save_strategy="no", report_to=[], use_cpu=True,
    )
    peft = LoraConfig(r=g.lora.r, lora_alpha=g.lora.alpha, lora_dropout=g.lora.dropout,
                      target_modules=list(g.lora.target_modules), task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=model, reward_funcs=[format_reward, accuracy_reward, reasoning_reward], args=args,
                          train_dataset=data, processing_class=processor, peft_config=peft)
    result = trainer.train()
    return result.metrics["train_runtime"] / g.max_steps


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="GRPO steps per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side")
    parser.add_argument("--sft-steps", type=int, default=100, help="SFT warm-up steps of the workspace")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)

    import pandas as pd

    from rarl_core.config import load_config

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = load_config(build_workspace(root, args.sft_steps))
        cfg = dataclasses.replace(cfg, grpo=dataclasses.replace(cfg.grpo, max_steps=args.steps, save_steps=10_000))
        rows = pd.read_parquet(Path(cfg.paths.augmented) / "train.parquet")
        ours, bare = [], []
        for i in range(args.repeats):
            ours.append(run_ours(cfg, rows, root / f"ours{i}"))
            bare.append(run_bare(cfg, rows, root / f"bare{i}"))
    result = {
        "benchmark": "grpo_overhead",
        "date": date.today().isoformat(),
        "machine": platform.node(),
        "config": {"steps": args.steps, "batch_size": cfg.grpo.batch_size, "num_generations": cfg.grpo.num_generations,
                   "max_completion_length": cfg.grpo.max_completion_length},
        "ours_s_per_step": spread(ours),
        "bare_trl_s_per_step": spread(bare),
        "ratio_median": statistics.median(ours) / statistics.median(bare),
        "goal": "ratio_median <= 1.05",
    }
    write_result("grpo_overhead", result, args.out)
    return result


if __name__ == "__main__":
    main()
