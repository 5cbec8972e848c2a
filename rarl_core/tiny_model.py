"""The embedded default model: a tiny Qwen2-VL built offline, so the whole pipeline runs with no hub and no GPU.

It has the real Qwen2-VL architecture (mRoPE, a vision tower with patch merging, the Qwen chat template and special
tokens), only narrow and shallow, with a byte-level BPE tokenizer trained on the pipeline's own text. It is saved
with `save_pretrained`, so every later stage loads it exactly as it would load `Qwen/Qwen2-VL-2B-Instruct`.
The language model's weights are random: the SFT warm-up is what teaches it the task. The vision tower and merger
get a short pretraining on synthetic objects first (rarl_core/vision_pretrain.py), the tiny stand-in for the
pretrained vision encoder a real VLM starts from: without it, SFT never learnt to see the starter set's lesions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Qwen2Tokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from rarl_core.config import TinyModelConfig
from rarl_core.modeling import QwenVLImageProcessor

# Qwen2-VL's special tokens, in its own order; the model config refers to the vision ones by id.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def chat_template() -> str:
    """Qwen2-VL's chat template, as TRL ships it (identical rendering to the hub model's)."""
    return resources.files("trl").joinpath("chat_templates/qwen2_5_vl.jinja").read_text()


def train_tokenizer(corpus: Iterable[str], vocab_size: int) -> Qwen2Tokenizer:
    """Train a byte-level BPE on `corpus` and wrap it as a Qwen2 tokenizer with Qwen's special tokens."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=state["vocab"],
        merges=merges,
        errors="replace",
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=4096,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.add_tokens(["<|endoftext|>"], special_tokens=True)
    tokenizer.chat_template = chat_template()
    return tokenizer


def build_config(cfg: TinyModelConfig, tokenizer: Qwen2Tokenizer) -> Qwen2VLConfig:
    head_dim = cfg.hidden_size // cfg.num_heads
    quarter = head_dim // 2 // 4  # mrope_section splits head_dim/2 rotary frequencies over (t, h, w)
    mrope_section = [head_dim // 2 - 2 * 3 * quarter // 2, 3 * quarter // 2, 3 * quarter // 2]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=cfg.hidden_size,
            intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_kv_heads,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=cfg.vision_depth,
            embed_dim=cfg.vision_embed_dim,
            hidden_size=cfg.hidden_size,
            num_heads=max(1, cfg.vision_embed_dim // 32),
            spatial_merge_size=cfg.vision_merge_size,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_model(cfg: TinyModelConfig, corpus: Iterable[str], out_dir: Path, image_pixels: int) -> int:
    """Build tokenizer, config, randomly initialised model and processor; save all to `out_dir` (`save_pretrained`,
    loadable like a hub checkpoint). The vision pretraining (rarl_core/vision_pretrain.py) runs on the saved folder.

    `image_pixels` is the processor's image area (112*112 with merge size 4 -> 4 image tokens). Returns the
    parameter count.
    """
    tokenizer = train_tokenizer(corpus, cfg.vocab_size)
    config = build_config(cfg, tokenizer)
    torch.manual_seed(cfg.seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.generation_config.do_sample = False
    merge = config.vision_config.spatial_merge_size
    image_processor = Qwen2VLImageProcessorPil(min_pixels=image_pixels, max_pixels=image_pixels, merge_size=merge)
    processor = QwenVLImageProcessor(image_processor, tokenizer, chat_template=tokenizer.chat_template)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return sum(p.numel() for p in model.parameters())
