"""GRPO with LoRA: the RL stage of RARL.

A fresh LoRA adapter on the SFT model is trained by TRL's GRPOTrainer. The reward is the weighted sum of named
rewards from rarl_core/rewards.py: format, accuracy and reasoning. With `reasoning` weight 0 this is conventional
RL (format + accuracy, as MedVLM-R1 and Med-R1 do); with a positive weight it is RARL. Every reward is passed to
TRL even at weight 0, so each one is computed and logged per step (`rewards/<name>/mean`) and RL and RARL runs can be
compared on the same curves.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rarl_core import rewards
from rarl_core.config import Config
from rarl_core.modeling import load_model, load_processor
from rarl_core.training import device_args, peft_lora, vision_dataset

REWARD_FUNCS = {
    "format": rewards.format_reward,
    "accuracy": rewards.accuracy_reward,
    "reasoning": rewards.reasoning_reward,
}


def grpo_dataset(frame: pd.DataFrame):
    """Prompt rows for GRPO; the reference columns reach the reward functions as keyword arguments."""
    extra = {"answer": "answer", "answer_type": "answer_type", "choices": "choices", "question": "question"}
    return vision_dataset(frame, "prompt_text", extra)


def train_grpo(
    cfg: Config,
    augmented: pd.DataFrame,
    sft_model: Path,
    out_dir: Path,
    work_dir: Path,
    report_to: list[str],
    reward_funcs: dict | None = None,
) -> dict:
    """Train a GRPO LoRA adapter on the SFT model; save the adapter (PEFT folder) to `out_dir`.

    `reward_funcs` replaces the named rewards (tests use a reward the tiny model can easily move).
    """
    from trl import GRPOConfig, GRPOTrainer

    g = cfg.grpo
    funcs = reward_funcs or REWARD_FUNCS
    weights = [g.reward_weights.get(name, 0.0) for name in funcs]
    processor = load_processor(sft_model, cfg.model.min_pixels, cfg.model.max_pixels)
    model = load_model(sft_model, cfg.model.dtype)
    args = GRPOConfig(
        output_dir=str(work_dir),
        max_steps=g.max_steps,
        per_device_train_batch_size=g.batch_size,
        gradient_accumulation_steps=g.grad_accum,
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        beta=g.beta,
        loss_type=g.loss_type,
        importance_sampling_level=g.importance_sampling_level,
        reward_weights=weights,
        learning_rate=g.learning_rate,
        lr_scheduler_type=g.lr_scheduler,
        warmup_steps=round(g.warmup_ratio * g.max_steps),
        gradient_checkpointing=g.gradient_checkpointing,
        logging_steps=g.logging_steps,
        seed=g.seed,
        save_strategy="no",
        report_to=report_to,
        run_name="grpo",
        dataloader_num_workers=0,
        **device_args(cfg.model.dtype),
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=list(funcs.values()),
        args=args,
        train_dataset=grpo_dataset(augmented),
        processing_class=processor,
        peft_config=peft_lora(g.lora),
    )
    result = trainer.train()
    trainer.model.save_pretrained(out_dir)
    return summarize_rewards(trainer.state.log_history, list(funcs)) | {
        "train_runtime_s": float(result.metrics.get("train_runtime", 0.0)),
    }


def summarize_rewards(log_history: list[dict], names: list[str]) -> dict:
    """Each reward's mean at the first and the last logged step: the 'before and after' of GRPO."""
    logs = [log for log in log_history if "reward" in log]
    if not logs:
        return {}
    out = {"reward_first": float(logs[0]["reward"]), "reward_last": float(logs[-1]["reward"])}
    for name in names:
        key = f"rewards/{getattr(REWARD_FUNCS.get(name), '__name__', name)}/mean"
        values = [log[key] for log in logs if key in log]
        if values:
            out[f"{name}_first"], out[f"{name}_last"] = float(values[0]), float(values[-1])
    return out
