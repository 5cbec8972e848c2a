"""Loading Qwen2-VL models and processors, from the hub or from a local `save_pretrained` folder.

Why a processor subclass: transformers' stock `Qwen2VLProcessor` also builds a video processor, which needs
torchvision, and torchvision does not import beside the CPU torch wheel this project runs on. RARL never feeds video,
so `QwenVLImageProcessor` is the same processor without the video half. It is registered with `AutoProcessor`, since
without that `AutoProcessor.from_pretrained` on our folders silently returns only the tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    Qwen2VLConfig,
    Qwen2VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil


class QwenVLImageProcessor(Qwen2VLProcessor):
    """Qwen2-VL processor for images and text only (no video processor, hence no torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


AutoProcessor.register(Qwen2VLConfig, QwenVLImageProcessor, exist_ok=True)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_processor(name_or_path: str | Path, min_pixels: int, max_pixels: int) -> QwenVLImageProcessor:
    """Build the image+text processor of a Qwen2-VL checkpoint.

    `min_pixels`/`max_pixels` bound the image area, hence the number of image tokens ((H/28) * (W/28)); they are
    set from params.yaml rather than from the checkpoint so that training and evaluation agree.
    """
    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    tokenizer.padding_side = "left"  # generation appends on the right; TRL sets what it needs for training
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(
        str(name_or_path), min_pixels=min_pixels, max_pixels=max_pixels
    )
    return QwenVLImageProcessor(image_processor, tokenizer, chat_template=tokenizer.chat_template)


def load_model(name_or_path: str | Path, dtype: str = "float32", device: str | None = None):
    """Load a Qwen2-VL model for image-text-to-text in the given dtype (bfloat16 on GPU, float32 on CPU)."""
    model = AutoModelForImageTextToText.from_pretrained(str(name_or_path), dtype=DTYPES[dtype])
    if device:
        model.to(device)
    return model


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
