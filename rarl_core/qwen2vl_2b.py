"""Qwen2-VL-2B-Instruct's real architecture with random weights: a model folder built offline, at real shapes.

Why: the weights cannot be downloaded here, and they change no shape, no memory figure and no code path. Everything
else of the hub model is reproduced: its config.json (below, verbatim, including the transformers-4 field names that
transformers converts on load exactly as it does for the hub file), its generation_config.json, the real tokenizer
(rarl_core/qwen2_tokenizer.py) and the real image processor at the given pixel bounds. The depth knobs make the
same folder at 1-2 layers for tests; everything else stays at real width (hidden 1536, 12/2 heads, MLP 8960,
vocabulary 151,936 with tied embeddings, vision 1280 wide with 16 heads).

The weights are built in bfloat16, the hub checkpoint's dtype: 2.2 G parameters take 4.4 GB instead of 8.8 GB, and
`load_model` casts them to the dtype params.yaml asks for.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, GenerationConfig, Qwen2VLConfig
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from rarl_core.modeling import QwenVLImageProcessor
from rarl_core.qwen2_tokenizer import build_qwen2_tokenizer

# Qwen/Qwen2-VL-2B-Instruct config.json, as published on the hub (transformers 4.41 field names).
HUB_CONFIG = {
    "architectures": ["Qwen2VLForConditionalGeneration"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "hidden_act": "silu",
    "hidden_size": 1536,
    "initializer_range": 0.02,
    "intermediate_size": 8960,
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "model_type": "qwen2_vl",
    "num_attention_heads": 12,
    "num_hidden_layers": 28,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.41.2",
    "use_cache": True,
    "use_sliding_window": False,
    "vision_config": {
        "depth": 32,
        "embed_dim": 1280,
        "mlp_ratio": 4,
        "num_heads": 16,
        "in_chans": 3,
        "hidden_size": 1536,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "spatial_patch_size": 14,
        "temporal_patch_size": 2,
    },
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vocab_size": 151936,
}

# Qwen/Qwen2-VL-2B-Instruct generation_config.json. Kept as the hub has it (near-greedy sampling, top_k 1, both end
# tokens) so that the product meets what a user of the real checkpoint meets.
HUB_GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "repetition_penalty": 1.0,
    "temperature": 0.01,
    "top_p": 0.001,
    "top_k": 1,
}


def qwen2vl_2b_config(text_layers: int, vision_depth: int) -> Qwen2VLConfig:
    """The hub config with `text_layers` decoder layers and `vision_depth` vision blocks (28 and 32 in the hub)."""
    if text_layers < 1 or vision_depth < 1:
        raise ValueError(f"text_layers and vision_depth must be >= 1, got {text_layers} and {vision_depth}")
    values = copy.deepcopy(HUB_CONFIG)
    values["num_hidden_layers"] = text_layers
    values["max_window_layers"] = min(text_layers, values["max_window_layers"])
    values["vision_config"]["depth"] = vision_depth
    return Qwen2VLConfig(**values)


def build_qwen2vl_2b(out_dir: Path, *, text_layers: int, vision_depth: int, min_pixels: int, max_pixels: int,
                     seed: int) -> int:
    """Save a random-weight Qwen2-VL-2B-Instruct (model, real tokenizer, processor) to `out_dir`; return its size.

    `min_pixels`/`max_pixels` bound the image area as in params.yaml (200704 = 448x448 -> 256 image tokens).
    The same seed gives the same weights.
    """
    tokenizer = build_qwen2_tokenizer()  # first: a missing ranks file fails before minutes of initialisation
    config = qwen2vl_2b_config(text_layers, vision_depth)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(**HUB_GENERATION_CONFIG)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)
    processor = QwenVLImageProcessor(image_processor, tokenizer, chat_template=tokenizer.chat_template)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return sum(p.numel() for p in model.parameters())
