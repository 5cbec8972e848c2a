"""What SFT and GRPO share: the refusal of a distributed run that is not what the accelerate config asked for, and a
length filter that counts what the trainer is fed (a training row's tokens as TRL's collator builds them)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
from accelerate.utils import DistributedType
from PIL import Image

from rarl_core.config import ConfigError
from rarl_core.training import check_distributed
from tests.conftest import config_with


def trainer_as(kind: DistributedType):
    return SimpleNamespace(accelerator=SimpleNamespace(distributed_type=kind))


def test_an_fsdp_config_that_accelerate_runs_as_ddp_is_refused(monkeypatch):
    """accelerate 1.15 runs accelerate/fsdp.yaml on CPU processes as MULTI_CPU (DDP), silently: refused, naming the
    config and the CPU one to use. Where the processes do shard (FSDP) or no sharding was asked for, training goes
    on."""
    resources = config_with({"resources": {"num_processes": 2, "accelerate_config": "accelerate/fsdp.yaml"}}).resources
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ConfigError, match=r"accelerate/fsdp.yaml\) asks for FSDP.*as MULTI_CPU.*cpu_ddp.yaml"):
        check_distributed(trainer_as(DistributedType.MULTI_CPU), resources)
    check_distributed(trainer_as(DistributedType.FSDP), resources)
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    check_distributed(trainer_as(DistributedType.MULTI_CPU), resources)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ConfigError, match="asks for DEEPSPEED"):
        check_distributed(trainer_as(DistributedType.MULTI_CPU), resources)


def test_sequence_lengths_count_the_rows_the_sft_collator_builds(tmp_path):
    """Prompt with its image tokens, then the completion as the chat template renders it. Qwen2-VL's template closes
    the answer with <|im_end|> and a newline: the count once added one end token and came out one short per row
    (found at real shapes, measured: 319 counted, 320 fed)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from rarl_core.modeling import QwenVLImageProcessor
    from rarl_core.sft import sft_dataset
    from rarl_core.tiny_model import train_tokenizer
    from rarl_core.training import sequence_lengths

    rows = pd.DataFrame({
        "prompt_text": ["Is there a fracture?", "Which organ is shown? Think it through before answering."],
        "target": ["<think>cortex intact</think><answer>no</answer>", "<answer>liver</answer>"],
        "image_path": [str(tmp_path / "a.png"), str(tmp_path / "b.png")],
    })
    Image.new("RGB", (112, 112), (90, 90, 90)).save(tmp_path / "a.png")
    Image.new("RGB", (168, 112), (30, 60, 90)).save(tmp_path / "b.png")
    tokenizer = train_tokenizer([*rows["prompt_text"], *rows["target"]] * 20, 400)
    processor = QwenVLImageProcessor(Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=200704), tokenizer,
                                     chat_template=tokenizer.chat_template)
    collator = DataCollatorForVisionLanguageModeling(processor=processor, completion_only_loss=True)
    data = sft_dataset(rows)
    fed = [int(collator([data[i]])["attention_mask"].sum()) for i in range(len(rows))]
    assert sequence_lengths(rows, processor, with_target=True) == fed
    prompt_only = sequence_lengths(rows, processor, with_target=False)
    assert all(p < f for p, f in zip(prompt_only, fed))
