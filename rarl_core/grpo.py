"""GRPO with LoRA: the RL stage of RARL.

A fresh LoRA adapter on the SFT model is trained by TRL's GRPOTrainer. The reward is the weighted sum of named
rewards from rarl_core/rewards.py: format, accuracy, reasoning and cue. With `reasoning` weight 0 this is conventional
RL (format + accuracy, as MedVLM-R1 and Med-R1 do); with a positive weight it is RARL. Every reward is passed to
TRL even at weight 0, so each one is computed and logged per step (`rewards/<name>/mean`) and RL and RARL runs can be
compared on the same curves.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from rarl_core.rewards import REWARD_FUNCS
from rarl_core.config import Config
from rarl_core.modeling import load_model, load_processor
from rarl_core.checkpoints import last_checkpoint
from rarl_core.training import device_args, drop_too_long, peft_lora, vision_dataset

# Qwen2-VL's vision special tokens: prompts spell their images with them, a completion must never hold one
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")


def grpo_dataset(frame: pd.DataFrame):
    """Prompt rows for GRPO; the reference columns reach the reward functions as keyword arguments."""
    extra = {"answer": "answer", "answer_type": "answer_type", "choices": "choices", "question": "question",
             "reasoning": "reasoning"}
    return vision_dataset(frame, "prompt_text", extra)


def vision_token_ban(tokenizer, use_vllm: bool) -> dict:
    """GRPOConfig.generation_kwargs that keep sampled completions free of the vision special tokens.

    A completion holding <|image_pad|> breaks the policy forward that follows ("Image features and image tokens do
    not match": it counts as one more image token). TRL suppresses that one token only when transformers generates;
    with vLLM the ban has to reach SamplingParams, which spell it `bad_words`.
    """
    if use_vllm:
        return {"bad_words": list(VISION_TOKENS)}
    ids = [tokenizer.convert_tokens_to_ids(token) for token in VISION_TOKENS]
    return {"suppress_tokens": [i for i in ids if i is not None and i != tokenizer.unk_token_id]}


def train_grpo(
    cfg: Config,
    variant: str,
    augmented: pd.DataFrame,
    sft_model: Path,
    out_dir: Path,
    work_dir: Path,
    report_to: list[str],
    reward_funcs: dict | None = None,
    callbacks: list | None = None,
) -> dict:
    """Train the GRPO LoRA adapter of `variant` (its reward weights) on the SFT model; save it to `out_dir`.

    `reward_funcs` replaces the named rewards (tests use a reward the tiny model can easily move). `callbacks`
    (transformers TrainerCallbacks) see every log and step: the comparison records reward curves through them.
    """
    from trl import GRPOConfig, GRPOTrainer

    g = cfg.grpo
    if g.use_vllm and importlib.util.find_spec("vllm") is None:
        raise RuntimeError("grpo.use_vllm is true but vLLM is not installed: pip install vllm, or set it to false")
    funcs = reward_funcs or REWARD_FUNCS
    weights = [g.variants[variant].get(name, 0.0) for name in funcs]
    processor = load_processor(sft_model, cfg.model.min_pixels, cfg.model.max_pixels)
    augmented, too_long = drop_too_long(augmented, processor, g.max_prompt_length, with_target=False)
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
        scale_rewards=g.scale_rewards,
        multi_objective_aggregation=g.multi_objective_aggregation,
        reward_weights=weights,
        learning_rate=g.learning_rate,
        lr_scheduler_type=g.lr_scheduler,
        warmup_steps=round(g.warmup_ratio * g.max_steps),
        gradient_checkpointing=g.gradient_checkpointing,
        use_vllm=g.use_vllm,
        vllm_mode="colocate",
        generation_kwargs=vision_token_ban(processor.tokenizer, g.use_vllm),
        logging_steps=g.logging_steps,
        seed=g.seed,
        save_strategy="steps",
        save_steps=g.save_steps,
        save_total_limit=2,
        report_to=report_to,
        run_name=f"grpo: {variant}",
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
        callbacks=callbacks,
    )
    resume = last_checkpoint(work_dir)
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.model.save_pretrained(out_dir)
    return summarize_rewards(trainer.state.log_history, list(funcs)) | {
        "train_runtime_s": float(result.metrics.get("train_runtime", 0.0)),
        "train_rows": len(augmented),
        "dropped_too_long": too_long,
        "resumed_from_step": int(resume.rsplit("-", 1)[1]) if resume else 0,
        "global_step": int(trainer.state.global_step),
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
