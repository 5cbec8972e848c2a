"""What SFT and GRPO share: datasets of image + conversational prompt, LoRA configs, trainer arguments.

Kept apart from the two stages so that each of rarl_core/sft.py and rarl_core/grpo.py reads top to bottom as the
recipe it is.
"""

from __future__ import annotations

import os

import pandas as pd
import torch

from rarl_core.config import ConfigError, LoraConfig, ResourcesConfig
from rarl_core.prompts import user_message


def assistant_message(text: str) -> list[dict]:
    """The answer turn of a training row, as SFT's completion column holds it."""
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def sequence_lengths(frame: pd.DataFrame, processor, with_target: bool) -> list[int]:
    """Tokens each row costs: the chat-formatted prompt with its image tokens, plus the completion as the chat
    template renders it (as TRL's collator builds it: Qwen2-VL's template closes the answer with <|im_end|> and a
    newline, two tokens, not one)."""
    from PIL import Image

    tokenizer = processor.tokenizer
    image_tokens: dict[tuple[int, int], int] = {}
    lengths = []
    for row in frame.itertuples():
        text = processor.apply_chat_template(user_message(row.prompt_text), add_generation_prompt=True, tokenize=False)
        with Image.open(row.image_path) as image:
            size = (image.height, image.width)
        if size not in image_tokens:
            image_tokens[size] = processor._get_num_multimodal_tokens(image_sizes=[size])["num_image_tokens"][0]
        n = len(tokenizer(text)["input_ids"]) - 1 + image_tokens[size]  # the one <|image_pad|> expands
        if with_target:
            full = processor.apply_chat_template(user_message(row.prompt_text) + assistant_message(row.target),
                                                 tokenize=False)
            n += len(tokenizer(full[len(text):], add_special_tokens=False)["input_ids"])
        lengths.append(n)
    return lengths


def drop_too_long(frame: pd.DataFrame, processor, max_tokens: int, with_target: bool) -> tuple[pd.DataFrame, int]:
    """Rows that fit in `max_tokens`, and how many were dropped. Nothing is ever truncated."""
    keep = [n <= max_tokens for n in sequence_lengths(frame, processor, with_target)]
    kept = frame[keep].reset_index(drop=True)
    if kept.empty:
        raise ValueError(f"every training row is longer than {max_tokens} tokens: raise the length limit in params.yaml")
    return kept, len(frame) - len(kept)


def peft_lora(cfg: LoraConfig):
    """PEFT LoRA over the language model's projections only (the vision tower stays frozen)."""
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        task_type="CAUSAL_LM",
    )


def vision_dataset(frame: pd.DataFrame, prompt_column: str, extra: dict[str, str]):
    """A `datasets.Dataset` with `image` (decoded lazily from the PNG), a conversational `prompt`, and extras.

    `extra` maps dataset column names to frame column names (e.g. the reference answer for reward functions).
    """
    from datasets import Dataset, Image

    data = {
        "image": list(frame["image_path"]),
        "prompt": [user_message(text) for text in frame[prompt_column]],
    }
    for name, column in extra.items():
        # parquet gives list columns back as numpy arrays; datasets wants plain lists of one type
        data[name] = [[str(x) for x in v] if hasattr(v, "__len__") and not isinstance(v, str) else v
                      for v in frame[column]]
    return Dataset.from_dict(data).cast_column("image", Image())


def device_args(dtype: str) -> dict:
    """TrainingArguments fields that depend on the hardware: CPU runs need use_cpu (TRL's bf16 default refuses CPU)."""
    on_gpu = torch.cuda.is_available()
    return {
        "use_cpu": not on_gpu,
        "bf16": on_gpu and dtype == "bfloat16",
        "fp16": on_gpu and dtype == "float16",
    }


def processes(trainer) -> dict:
    """How the run was spread: processes that trained together, accelerate's distributed type, torch threads each."""
    return {"processes": trainer.accelerator.num_processes,
            "distributed_type": trainer.accelerator.distributed_type.value,
            "threads_per_process": torch.get_num_threads()}


def check_distributed(trainer, resources: ResourcesConfig) -> None:
    """Fail before training when the processes do not train the way the accelerate config asks: accelerate runs an
    FSDP (or DeepSpeed) config on CPU processes as plain DDP, without a word (seen with accelerate 1.15 and
    accelerate/fsdp.yaml: DistributedType MULTI_CPU, DDP's reducer)."""
    got = trainer.accelerator.distributed_type.value
    for asked, flag in (("FSDP", "ACCELERATE_USE_FSDP"), ("DEEPSPEED", "ACCELERATE_USE_DEEPSPEED")):
        if os.environ.get(flag, "").lower() == "true" and got != asked:
            raise ConfigError(
                f"resources.accelerate_config ({resources.accelerate_config}) asks for {asked}, but accelerate trains "
                f"these processes as {got}: it does {asked} on GPUs only. On CPU use accelerate/cpu_ddp.yaml (DDP)."
            )
