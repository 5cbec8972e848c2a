"""GRPO step cost of our stage vs a bare TRL GRPOTrainer script doing the same work: same tiny model, data, rewards,
reward weights, generation settings, precision, threads and GRPOConfig.

Our stage (`rarl_core.grpo.train_grpo`) adds dataset building, the too-long filter, checkpointing and LoRA set-up
around TRL; the question is whether that costs anything per step. The bare side is a plain TRL script that sets every
GRPOConfig value our stage sets, to the same value, written out: left to TRL's defaults it would train with gradient
checkpointing (TRL's GRPOConfig default; +40% CPU time per step measured here) and bf16 autocast, and generate
without our ban of the vision tokens. The benchmark checks its own premise: it compares the two GRPOConfigs as the
trainers saw them (`config_differences`, empty when the sides agree) and the completion tokens generated at every
step (`same_completions`: with one seed and one config both sides sample the same tokens).

Both sides run interleaved in one process (ours, bare, then bare, ours, ...: neither always goes first) with the same
torch thread count, after an untimed step of each, so a change of machine load hits both; each pair gives a ratio,
and the figure is the median of those ratios, in wall seconds and in process CPU seconds per step (CPU time is what
other processes on a shared machine inflate least). With torch's default of one thread per core on this 2-core machine
shared with other work, seconds per step swung 2.7x between identical runs and were 10-20x those of one thread (OpenMP
threads waiting on each other on busy cores), hence one thread by default.

    python benchmarks/grpo_overhead.py [--steps 8] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import header, spread, write_result  # benchmarks/_common.py

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
UNCOMPARED = {"output_dir", "logging_dir", "run_name"}  # where each side writes, and its name: not work


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


def recorder():
    """A TrainerCallback (the same one on both sides) that keeps what the trainer was configured with, the wall and
    CPU time of the training loop, and the completion tokens generated at every step."""
    from transformers import TrainerCallback

    class Recorder(TrainerCallback):
        def __init__(self):
            self.args, self.tokens, self.wall_s, self.cpu_s = {}, [], 0.0, 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            # the GRPOConfig, and the dataset columns (the reward functions' keyword arguments)
            columns = sorted(kwargs["train_dataloader"].dataset.column_names)
            self.args = args.to_dict() | {"train_dataset columns": columns}
            self._started = (time.perf_counter(), time.process_time())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:  # logging_steps 1: one log per step
                self.tokens.append(logs["completions/mean_length"] * args.per_device_train_batch_size
                                   * args.gradient_accumulation_steps)

        def on_train_end(self, args, state, control, **kwargs):
            self.wall_s = time.perf_counter() - self._started[0]
            self.cpu_s = time.process_time() - self._started[1]

    return Recorder()


def run_ours(cfg, rows, work: Path):
    """rarl_core.grpo.train_grpo, the function the grpo stage runs."""
    from rarl_core.grpo import train_grpo

    clock = recorder()
    train_grpo(cfg, "rl", rows, Path(cfg.paths.sft_model), work / "adapter", work / "ckpt", [], callbacks=[clock])
    return clock


def run_bare(cfg, rows, work: Path):
    """A plain TRL script, written the way TRL's VLM GRPO examples are, with the values our stage uses."""
    from datasets import Dataset, Image
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText
    from trl import GRPOConfig, GRPOTrainer

    from rarl_core.modeling import load_processor  # the stock processor wants torchvision for its video half
    from rarl_core.rewards import REWARD_FUNCS  # the same reward functions, in the same order

    g = cfg.grpo
    processor = load_processor(cfg.paths.sft_model, cfg.model.min_pixels, cfg.model.max_pixels)
    model = AutoModelForImageTextToText.from_pretrained(cfg.paths.sft_model, dtype="float32")
    data = Dataset.from_dict({
        "image": list(rows["image_path"]),
        "prompt": [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": t}]}]
                   for t in rows["prompt_text"]],
        "answer": list(rows["answer"]),
        "answer_type": list(rows["answer_type"]),
        "choices": [[str(c) for c in cs] for cs in rows["choices"]],
        "question": list(rows["question"]),
        "reasoning": list(rows["reasoning"]),
    }).cast_column("image", Image())
    vision = ["<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
    rewards = REWARD_FUNCS
    args = GRPOConfig(
        output_dir=str(work / "bare"), max_steps=g.max_steps, per_device_train_batch_size=g.batch_size,
        gradient_accumulation_steps=g.grad_accum, num_generations=g.num_generations,
        max_completion_length=g.max_completion_length, temperature=g.temperature, beta=g.beta,
        loss_type=g.loss_type, importance_sampling_level=g.importance_sampling_level,
        scale_rewards=g.scale_rewards, multi_objective_aggregation=g.multi_objective_aggregation,
        reward_weights=[g.variants["rl"].get(name, 0.0) for name in rewards], learning_rate=g.learning_rate,
        lr_scheduler_type=g.lr_scheduler, warmup_steps=round(g.warmup_ratio * g.max_steps),
        gradient_checkpointing=g.gradient_checkpointing, use_vllm=False, vllm_mode="colocate",
        generation_kwargs={"suppress_tokens": processor.tokenizer.convert_tokens_to_ids(vision)},
        logging_steps=g.logging_steps, seed=g.seed, save_strategy="steps", save_steps=g.save_steps,
        save_total_limit=2, report_to=[], run_name="grpo: rl", dataloader_num_workers=0,
        use_cpu=True, bf16=False, fp16=False,
    )
    peft = LoraConfig(r=g.lora.r, lora_alpha=g.lora.alpha, lora_dropout=g.lora.dropout,
                      target_modules=list(g.lora.target_modules), task_type="CAUSAL_LM")
    clock = recorder()
    trainer = GRPOTrainer(model=model, reward_funcs=list(rewards.values()), args=args, train_dataset=data,
                          processing_class=processor, peft_config=peft, callbacks=[clock])
    trainer.train()
    return clock


def config_differences(ours: dict, bare: dict) -> dict:
    """{field: [ours, bare]} for every GRPOConfig value (and the dataset's columns) that differs between the two
    sides, paths aside."""
    return {k: [ours.get(k), bare.get(k)] for k in sorted(set(ours) | set(bare))
            if k not in UNCOMPARED and ours.get(k) != bare.get(k)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="GRPO steps per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side")
    parser.add_argument("--sft-steps", type=int, default=100, help="SFT warm-up steps of the workspace")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for both sides")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)

    import pandas as pd
    import torch

    from rarl_core.config import load_config

    load_before = os.getloadavg()
    torch.set_num_threads(args.threads)
    runs: dict[str, list] = {"ours": [], "bare": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = load_config(build_workspace(root, args.sft_steps))
        # logging every step (both sides) for the tokens; no checkpoint within the timed steps (both sides)
        cfg = dataclasses.replace(cfg, grpo=dataclasses.replace(cfg.grpo, max_steps=args.steps, logging_steps=1,
                                                                save_steps=10_000))
        rows = pd.read_parquet(Path(cfg.paths.augmented) / "train.parquet")
        warm = dataclasses.replace(cfg, grpo=dataclasses.replace(cfg.grpo, max_steps=1))
        run_ours(warm, rows, root / "warm-ours")  # untimed: one-off costs of a process's first training fall here
        run_bare(warm, rows, root / "warm-bare")
        sides = {"ours": run_ours, "bare": run_bare}
        for i in range(args.repeats):
            for side in ("ours", "bare") if i % 2 == 0 else ("bare", "ours"):  # ABBA: neither side always first
                gc.collect()  # the previous trainer's garbage is collected here, not inside the next timed loop
                runs[side].append(sides[side](cfg, rows, root / f"{side}{i}"))
    per_step = {side: {"wall": [r.wall_s / args.steps for r in rs], "cpu": [r.cpu_s / args.steps for r in rs]}
                for side, rs in runs.items()}
    ratios = {clock: [o / b for o, b in zip(per_step["ours"][clock], per_step["bare"][clock])]
              for clock in ("wall", "cpu")}
    tokens = {side: [statistics.mean(r.tokens) for r in rs] for side, rs in runs.items()}
    result = header("grpo_overhead", load_before) | {
        "config": {"steps": args.steps, "batch_size": cfg.grpo.batch_size, "grad_accum": cfg.grpo.grad_accum,
                   "num_generations": cfg.grpo.num_generations,
                   "max_completion_length": cfg.grpo.max_completion_length, "torch_threads": torch.get_num_threads(),
                   "python": platform.python_version(), "torch": torch.__version__},
        "held_equal": "model, data and its order (seed), reward functions and weights, every GRPOConfig value and "
                      "the dataset's columns (config_differences lists any that differ), torch threads, process; "
                      "checked: completion tokens per step (same_completions)",
        "config_differences": config_differences(runs["ours"][0].args, runs["bare"][0].args),
        "same_completions": all(o.tokens == b.tokens for o, b in zip(runs["ours"], runs["bare"])),
        "ours_s_per_step": spread(per_step["ours"]["wall"]),
        "bare_trl_s_per_step": spread(per_step["bare"]["wall"]),
        "ours_cpu_s_per_step": spread(per_step["ours"]["cpu"]),
        "bare_trl_cpu_s_per_step": spread(per_step["bare"]["cpu"]),
        "ours_completion_tokens_per_step": spread(tokens["ours"], 1),
        "bare_trl_completion_tokens_per_step": spread(tokens["bare"], 1),
        "ratio_per_pair": [round(r, 3) for r in ratios["wall"]],
        "cpu_ratio_per_pair": [round(r, 3) for r in ratios["cpu"]],
        "ratio_median": statistics.median(ratios["wall"]),
        "cpu_ratio_median": statistics.median(ratios["cpu"]),
        "goal": "ratio_median <= 1.05",
    }
    write_result("grpo_overhead", result, args.out)
    return result


if __name__ == "__main__":
    main()
