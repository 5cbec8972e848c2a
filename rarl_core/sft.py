"""SFT warm-up: teach the base model the task and the <think>/<answer> format before GRPO.

TRL's SFTTrainer on prompt-completion rows (completion-only loss, images processed on the fly). With `mode: lora`
(the paper's choice for a pretrained base) the adapter is merged into the base before saving, because GRPO then
trains a fresh adapter on top (TRL refuses a PeftModel together with a new peft_config). With `mode: full` every
weight trains, which the randomly initialised tiny default needs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rarl_core.config import Config
from rarl_core.modeling import load_model, load_processor
from rarl_core.checkpoints import last_checkpoint
from rarl_core.training import (assistant_message, check_distributed, device_args, drop_too_long, peft_lora,
                                processes, vision_dataset)


def sft_dataset(augmented: pd.DataFrame):
    data = vision_dataset(augmented, "prompt_text", {"target": "target"})
    completions = [assistant_message(t) for t in data["target"]]
    return data.remove_columns("target").add_column("completion", completions)


def train_sft(cfg: Config, augmented: pd.DataFrame, out_dir: Path, work_dir: Path, report_to: list[str],
              callbacks: list | None = None) -> dict:
    """Train on the augmented rows; save a full model (LoRA merged) and its processor to `out_dir`.

    `work_dir` holds the checkpoints; training resumes from the last one there (see rarl_core/checkpoints.py).
    `callbacks` (transformers TrainerCallbacks) may stop training early: the comparison's equal-compute control.
    """
    from trl import SFTConfig, SFTTrainer

    processor = load_processor(cfg.model.name_or_path, cfg.model.min_pixels, cfg.model.max_pixels)
    augmented, too_long = drop_too_long(augmented, processor, cfg.sft.max_length, with_target=True)
    model = load_model(cfg.model.name_or_path, cfg.model.dtype)
    args = SFTConfig(
        output_dir=str(work_dir),
        max_steps=cfg.sft.max_steps,
        per_device_train_batch_size=cfg.sft.batch_size,
        gradient_accumulation_steps=cfg.sft.grad_accum,
        learning_rate=cfg.sft.learning_rate,
        lr_scheduler_type=cfg.sft.lr_scheduler,
        warmup_steps=round(cfg.sft.warmup_ratio * cfg.sft.max_steps),
        gradient_checkpointing=cfg.sft.gradient_checkpointing,
        logging_steps=cfg.sft.logging_steps,
        seed=cfg.sft.seed,
        max_length=None,  # never truncate: a cut prompt can lose image tokens
        completion_only_loss=True,
        save_strategy="steps",
        save_steps=cfg.sft.save_steps,
        save_total_limit=2,
        report_to=report_to,
        run_name="sft",
        dataloader_num_workers=0,
        **device_args(cfg.model.dtype),
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=sft_dataset(augmented),
        processing_class=processor,
        peft_config=peft_lora(cfg.sft.lora) if cfg.sft.mode == "lora" else None,
        callbacks=callbacks,
    )
    check_distributed(trainer, cfg.resources)
    resume = last_checkpoint(work_dir)
    result = trainer.train(resume_from_checkpoint=resume)
    # Every process calls save_model (under FSDP / ZeRO-3 it gathers the shards); only the main process writes.
    trainer.save_model(str(out_dir / "adapter" if cfg.sft.mode == "lora" else out_dir))
    if cfg.sft.mode == "lora" and trainer.accelerator.is_main_process:
        # merged in memory on the main process: right where each process holds whole weights (DDP, ZeRO-2);
        # untested under FSDP / ZeRO-3, which shard them
        trainer.model.merge_and_unload().save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    return {
        "train_loss": float(result.training_loss),
        "first_loss": float(losses[0]) if losses else float("nan"),
        "last_loss": float(losses[-1]) if losses else float("nan"),
        "train_runtime_s": float(result.metrics.get("train_runtime", 0.0)),
        "train_rows": len(augmented),
        "dropped_too_long": too_long,
        "resumed_from_step": int(resume.rsplit("-", 1)[1]) if resume else 0,
        "global_step": int(trainer.state.global_step),
        **processes(trainer),
    }
