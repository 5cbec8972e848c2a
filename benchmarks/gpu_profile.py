"""GPU profile of Qwen2-VL-2B-Instruct at the documented 40 GB profile: peak memory and step time of SFT-LoRA and
GRPO-LoRA, generation throughput against the memory-bandwidth bound, and the LoRA merge time.

Why: profiles/qwen2vl-2b-a100-40gb.yaml carries a memory estimate that nobody had measured; this measures it, on
whatever GPU is at hand, without a download. The model is Qwen2-VL-2B-Instruct's real architecture, written here
from its published config.json (text: hidden 1536, 28 layers, 12 heads / 2 KV heads, vocabulary 151,936, tied
embeddings; vision: 32 blocks, width 1280) with random weights: memory and time do not depend on the weights' values.
The image processor is the real one at the profile's max_pixels (448x448 -> 256 image tokens); the tokenizer is a
stand-in: random token ids from the text vocabulary around the real vision special tokens (a tokenizer changes which
ids, not how many). Values (batch sizes, LoRA ranks, generations, lengths, beta, gradient checkpointing, bf16) come
from the profile applied to params.yaml, as `rarl run --profile` applies it.

The steps are written out with PEFT and a plain forward/backward doing what TRL does per step:
  SFT   one micro-batch (sft.batch_size rows of ~800 tokens, completion-only labels): forward, backward, AdamW step;
        an optimizer step of the profile is sft.grad_accum of these.
  GRPO  generate num_generations completions of max_completion_length tokens for one prompt (sampling at the
        profile's temperature; min_new_tokens = max, so every completion is full length: the memory worst case),
        rewards (random here: the reward functions are CPU string code), group-normalised advantages, the reference
        forward with the adapter disabled (beta > 0), then the policy forward on prompt + completions (logits of the
        completion only, TRL's selective_log_softmax), the DAPO loss with the KL term, backward, AdamW step.
Generation throughput is HF `generate` (greedy, fixed length) at batch 1, num_generations and evaluate.batch_size,
prefill timed apart so that decoding alone is compared with the bound: each decoded step reads every weight of the
language model once (2 bytes each in bf16; the vision tower is not used while decoding), so
tokens/s <= batch x bandwidth / weight bytes, with the bandwidth measured here by a large device-to-device copy.

    python benchmarks/gpu_profile.py [--repeats 3]        # needs a CUDA GPU
    python benchmarks/gpu_profile.py --tiny --repeats 1   # the same code at tiny size in float32 (CPU): a smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from _common import spread, write_result  # benchmarks/_common.py


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PROFILE = REPO / "profiles" / "qwen2vl-2b-a100-40gb.yaml"


def qwen2vl_2b_config():
    """Qwen/Qwen2-VL-2B-Instruct's config.json, field by field in transformers' Qwen2VLConfig names."""
    from transformers import Qwen2VLConfig

    return Qwen2VLConfig(
        text_config=dict(
            vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
            num_attention_heads=12, num_key_value_heads=2, hidden_act="silu", max_position_embeddings=32768,
            rms_norm_eps=1e-6, use_sliding_window=False, sliding_window=32768, max_window_layers=28,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
            bos_token_id=151643, eos_token_id=151645,
        ),
        vision_config=dict(
            depth=32, embed_dim=1280, hidden_size=1536, hidden_act="quick_gelu", mlp_ratio=4, num_heads=16,
            in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
        ),
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
        tie_word_embeddings=True,
    )


def tiny_config():
    """The embedded default's architecture (rarl_core/tiny_model.py, params.yaml's tiny_model section)."""
    from rarl_core.config import TinyModelConfig
    from rarl_core.tiny_model import build_config, train_tokenizer

    tokenizer = train_tokenizer(["Is there a lesion? yes no <think> </think> <answer> </answer>"] * 20, 600)
    return build_config(TinyModelConfig(), tokenizer)


@dataclasses.dataclass
class Shape:
    """What one run measures: the profile's values, plus the lengths the profile leaves to the data."""

    dtype: str
    max_pixels: int
    prompt_text_tokens: int        # question + chat template around the image
    sft_batch: int
    sft_grad_accum: int
    sft_completion_tokens: int     # a reasoning answer: with 256 image tokens, ~800 tokens a row (the profile's note)
    sft_lora: dict
    grpo_lora: dict
    generations: tuple[int, ...]   # num_generations measured (one prompt each: batch = generations)
    completion_tokens: int
    temperature: float
    beta: float
    eval_batches: tuple[int, ...]
    gradient_checkpointing: bool
    learning_rate: float
    bandwidth_bytes: int
    special_ids: list[int] = dataclasses.field(default_factory=list)  # never generated (set from the config)


def shape_from_profile(tiny: bool) -> Shape:
    """The 40 GB profile applied to params.yaml and validated as `rarl run --profile` would; tiny sizes for --tiny."""
    import yaml

    from rarl_core.config import config_from_dict

    data = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in yaml.safe_load(PROFILE.read_text()).items():
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(data[section].get(key), dict):
                data[section][key].update(value)
            else:
                data[section][key] = value
    cfg = config_from_dict(data)
    lora = lambda c: {"r": c.r, "lora_alpha": c.alpha, "lora_dropout": c.dropout,  # noqa: E731
                      "target_modules": list(c.target_modules)}
    shape = Shape(
        dtype=cfg.model.dtype, max_pixels=cfg.model.max_pixels, prompt_text_tokens=48,
        sft_batch=cfg.sft.batch_size, sft_grad_accum=cfg.sft.grad_accum, sft_completion_tokens=480,
        sft_lora=lora(cfg.sft.lora), grpo_lora=lora(cfg.grpo.lora),
        generations=tuple(sorted({4, cfg.grpo.num_generations})), completion_tokens=cfg.grpo.max_completion_length,
        temperature=cfg.grpo.temperature, beta=cfg.grpo.beta,
        eval_batches=tuple(sorted({1, cfg.grpo.num_generations, cfg.evaluate.batch_size})),
        gradient_checkpointing=cfg.sft.gradient_checkpointing and cfg.grpo.gradient_checkpointing,
        learning_rate=cfg.grpo.learning_rate, bandwidth_bytes=1 << 30,
    )
    if tiny:
        shape = dataclasses.replace(shape, dtype="float32", max_pixels=56 * 56, prompt_text_tokens=8, sft_batch=2,
                                    sft_completion_tokens=8, generations=(2, 4), completion_tokens=8,
                                    eval_batches=(1, 4), bandwidth_bytes=64 << 20)
    return shape


# ----------------------------------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------------------------------


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def timed(device: str, fn, *args, **kwargs):
    """(seconds, result) of fn(*args), with the device's queue drained on both sides."""
    sync(device)
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    sync(device)
    return time.perf_counter() - start, out


def reset_peak(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb(device: str) -> float:
    """Peak allocated by torch since the last reset (GPU); on CPU the process's peak RSS so far (not per phase)."""
    import torch

    if device == "cuda":
        return round(torch.cuda.max_memory_allocated() / 1e9, 3)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)


def copy_bandwidth(device: str, nbytes: int, iters: int = 20) -> float:
    """Bytes per second moved by a device-to-device copy (each byte read once and written once)."""
    import torch

    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    seconds, _ = timed(device, lambda: [dst.copy_(src) for _ in range(iters)])
    del src, dst
    return 2 * nbytes * iters / seconds


# ----------------------------------------------------------------------------------------------------------------
# Inputs: one real-sized image through the real processor, token ids from a stand-in
# ----------------------------------------------------------------------------------------------------------------


def image_inputs(max_pixels: int):
    """pixel_values and image_grid_thw of one square RGB image of max_pixels (448x448: a 32x32 patch grid, 256
    tokens after the 2x2 merge), through rarl_core.modeling's processor class."""
    import numpy as np
    from PIL import Image

    from rarl_core.modeling import Qwen2VLImageProcessorPil

    side = int(math.isqrt(max_pixels))
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8))
    processor = Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=max_pixels)
    out = processor(images=[picture], return_tensors="pt")
    return out["pixel_values"], out["image_grid_thw"], processor.merge_size


def prompt_ids(config, n_image: int, n_text: int, generator):
    """Text ids around <|vision_start|> <|image_pad|> x n_image <|vision_end|>; text ids avoid every special id."""
    import torch

    text_vocab = min(config.image_token_id, config.video_token_id, config.vision_start_token_id,
                     config.vision_end_token_id, config.text_config.bos_token_id, config.text_config.eos_token_id)
    words = lambda n: torch.randint(0, text_vocab, (n,), generator=generator)  # noqa: E731
    ids = torch.cat([words(n_text // 2), torch.tensor([config.vision_start_token_id]),
                     torch.full((n_image,), config.image_token_id), torch.tensor([config.vision_end_token_id]),
                     words(n_text - n_text // 2)])
    return ids, text_vocab


class Batch(dict):
    """Model inputs for `rows` copies of one prompt (+ optional continuation ids), on a device."""

    @classmethod
    def make(cls, config, prompt, pixel_values, grid, rows: int, device: str, extra=None):
        import torch

        ids = prompt.unsqueeze(0).repeat(rows, 1)
        if extra is not None:
            ids = torch.cat([ids, extra], dim=1)
        return cls(input_ids=ids.to(device), attention_mask=torch.ones_like(ids, device=device),
                   mm_token_type_ids=(ids == config.image_token_id).int().to(device),
                   pixel_values=pixel_values.repeat(rows, 1).to(device), image_grid_thw=grid.repeat(rows, 1).to(device))


# ----------------------------------------------------------------------------------------------------------------
# The steps
# ----------------------------------------------------------------------------------------------------------------


def sft_step(model, optimizer, batch, labels, autocast) -> float:
    """One SFT micro-batch as TRL's SFTTrainer runs it: forward with completion-only labels, backward, AdamW."""
    with autocast():
        loss = model(**batch, labels=labels, use_cache=False).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def grpo_step(model, optimizer, config, prompt_batch, shape, generations: int, device: str, autocast) -> dict:
    """One GRPO step for one prompt as TRL's GRPOTrainer runs it (see the module docstring); seconds per phase."""
    import torch
    from trl.trainer.utils import selective_log_softmax

    length = shape.completion_tokens
    prompt_len = prompt_batch["input_ids"].shape[1]
    model.eval()  # generation: no dropout, KV cache on (gradient checkpointing is a training-mode thing)
    with torch.no_grad(), autocast():
        gen_s, sequences = timed(device, model.generate, **prompt_batch, do_sample=True,
                                 temperature=shape.temperature, top_p=1.0, top_k=0, max_new_tokens=length,
                                 min_new_tokens=length, pad_token_id=config.text_config.bos_token_id,
                                 suppress_tokens=shape.special_ids)
    completion = sequences[:, prompt_len:]
    batch = dict(prompt_batch, input_ids=sequences, attention_mask=torch.ones_like(sequences),
                 mm_token_type_ids=torch.cat([prompt_batch["mm_token_type_ids"],
                                              torch.zeros_like(completion, dtype=torch.int)], dim=1))
    rewards = torch.rand(generations, device=device)
    advantages = ((rewards - rewards.mean()) / (rewards.std() + 1e-4)).unsqueeze(1)

    def logps(logits_model):
        logits = logits_model(**batch, logits_to_keep=length + 1, use_cache=False).logits[:, :-1]
        return selective_log_softmax(logits / shape.temperature, completion)

    ref_s, ref = 0.0, None
    if shape.beta > 0:
        with torch.no_grad(), autocast(), model.disable_adapter():
            ref_s, ref = timed(device, logps, model)
    model.train()

    def policy():
        with autocast():
            per_token = logps(model)
            ratio = torch.exp(per_token - per_token.detach())  # one update per generation: old = current
            loss = -ratio * advantages
            if ref is not None:
                delta = ref - per_token
                loss = loss + shape.beta * (torch.exp(delta) - delta - 1)
            loss = loss.sum() / loss.numel()  # DAPO: mean over every completion token of the batch
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    train_s, _ = timed(device, policy)
    return {"generate_s": gen_s, "reference_forward_s": ref_s, "policy_forward_backward_s": train_s,
            "total_s": gen_s + ref_s + train_s}


def generate_fixed(model, batch, new_tokens: int, pad: int, suppress: list[int]):
    import torch

    with torch.no_grad():
        return model.generate(**batch, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                              pad_token_id=pad, suppress_tokens=suppress)


def vllm_child(model_dir: str, batches: list[int], prompt_len: int, new_tokens: int, text_vocab: int) -> dict:
    """Decode throughput of vLLM on the same random-weight model (text-only prompts of the same length)."""
    import torch
    from vllm import LLM, SamplingParams

    llm = LLM(model=model_dir, skip_tokenizer_init=True, dtype="bfloat16", gpu_memory_utilization=0.6,
              limit_mm_per_prompt={"image": 0, "video": 0})
    params = SamplingParams(max_tokens=new_tokens, min_tokens=new_tokens, ignore_eos=True, temperature=0.0,
                            detokenize=False)
    out = {}
    for batch in batches:
        prompts = [{"prompt_token_ids": torch.randint(0, text_vocab, (prompt_len,)).tolist()} for _ in range(batch)]
        llm.generate(prompts, params, use_tqdm=False)  # warm-up (CUDA graphs)
        start = time.perf_counter()
        llm.generate(prompts, params, use_tqdm=False)
        out[str(batch)] = round(batch * new_tokens / (time.perf_counter() - start), 1)
    return out


# ----------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed steps of each kind (after one warm-up)")
    parser.add_argument("--tiny", action="store_true",
                        help="the embedded tiny model at tiny sizes, float32 (runs on CPU)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for the JSON")
    parser.add_argument("--vllm-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.vllm_child:
        model_dir, batches, prompt_len, new_tokens, vocab = args.vllm_child
        print("VLLM " + json.dumps(vllm_child(model_dir, json.loads(batches), int(prompt_len), int(new_tokens),
                                              int(vocab))))
        return {}

    import torch

    if not torch.cuda.is_available() and not args.tiny:
        print("gpu_profile: no CUDA GPU here. It profiles the 2B model on a GPU; `--tiny` runs the same code at tiny "
              "size on CPU to check it.", file=sys.stderr)
        raise SystemExit(2)
    import peft
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2VLForConditionalGeneration

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape = shape_from_profile(args.tiny)
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[shape.dtype]
    autocast = lambda: torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32)  # noqa: E731
    generator = torch.Generator().manual_seed(0)
    config = tiny_config() if args.tiny else qwen2vl_2b_config()
    device_name = torch.cuda.get_device_name() if device == "cuda" else f"cpu ({platform.processor() or 'unknown'})"
    result = {
        "benchmark": "gpu_profile",
        "date": date.today().isoformat(),
        "machine": platform.node(),
        "device": device_name,
        "model": "tiny Qwen2-VL (embedded default), random weights" if args.tiny else
                 "Qwen2-VL-2B-Instruct architecture from its published config, random weights (nothing downloaded)",
        "tokenizer": "stand-in: random ids from the text vocabulary around the real vision special tokens",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                     "cuda": torch.version.cuda},
        "profile": str(PROFILE.relative_to(REPO)),
        "repeats": args.repeats,
    }

    # --- the model, its size, the bandwidth bound ---------------------------------------------------------------
    torch.manual_seed(0)
    reset_peak(device)
    with torch.device(device):  # random init directly on the device: seconds instead of minutes for 2.2 B weights
        build_s, model = timed(device, Qwen2VLForConditionalGeneration._from_config, config, dtype=dtype)
    model.generation_config.pad_token_id = config.text_config.bos_token_id
    unique = lambda params: {p.data_ptr(): p.numel() for p in params}  # noqa: E731  (tied weights once)
    all_params = sum(unique(model.parameters()).values())
    lm_params = sum(unique([*model.model.language_model.parameters(), *model.lm_head.parameters()]).values())
    weight_bytes = lm_params * torch.finfo(dtype).bits // 8
    bandwidth = copy_bandwidth(device, shape.bandwidth_bytes)
    result["parameters"] = {"total": all_params, "language_model_with_lm_head": lm_params,
                            "vision": sum(unique(model.model.visual.parameters()).values())}
    result["weights_gb"] = peak_gb(device)
    result["build_s"] = round(build_s, 2)
    result["attn_implementation"] = model.config._attn_implementation
    result["bandwidth_gb_per_s"] = round(bandwidth / 1e9, 1)
    result["decode_weight_bytes_per_step"] = weight_bytes

    pixel_values, grid, merge = image_inputs(shape.max_pixels)
    n_image = int(grid.prod()) // merge**2
    prompt, text_vocab = prompt_ids(config, n_image, shape.prompt_text_tokens, generator)
    # A random model samples from the whole vocabulary; a trained one never emits special or unused ids (an
    # <|image_pad|> in a completion would even break the next forward): they are suppressed while generating.
    shape.special_ids = list(range(text_vocab, config.text_config.vocab_size))
    result["shape"] = {k: v for k, v in dataclasses.asdict(shape).items() if k != "special_ids"}
    result["suppressed_token_ids"] = len(shape.special_ids)
    result["image_tokens"] = n_image
    result["prompt_tokens"] = int(prompt.numel())

    # --- generation throughput vs the bound (the base model, as evaluation runs a merged one) --------------------
    model.eval()
    generation = {}
    pad = config.text_config.bos_token_id
    for batch_size in shape.eval_batches:
        batch = Batch.make(config, prompt, pixel_values, grid, batch_size, device)
        reset_peak(device)
        with autocast():
            generate_fixed(model, batch, shape.completion_tokens, pad, shape.special_ids)  # warm-up
            prefill = [timed(device, generate_fixed, model, batch, 1, pad, shape.special_ids)[0]
                       for _ in range(args.repeats)]
            total = [timed(device, generate_fixed, model, batch, shape.completion_tokens, pad, shape.special_ids)[0]
                     for _ in range(args.repeats)]
        decode_s = [max(t - statistics.median(prefill), 1e-9) for t in total]
        decode_tps = [batch_size * (shape.completion_tokens - 1) / s for s in decode_s]
        bound = batch_size * bandwidth / weight_bytes
        generation[str(batch_size)] = {
            "tokens_per_s_end_to_end": spread([batch_size * shape.completion_tokens / t for t in total], 1),
            "decode_tokens_per_s": spread(decode_tps, 1),
            "prefill_s": spread(prefill),
            "bound_tokens_per_s": round(bound, 1),
            "ratio_to_bound_median": round(statistics.median(decode_tps) / bound, 3),
            "peak_memory_gb": peak_gb(device),
        }
    result["generation"] = generation

    # --- SFT-LoRA --------------------------------------------------------------------------------------------------
    if shape.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    sft_model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **shape.sft_lora))
    sft_model.train()
    optimizer = torch.optim.AdamW([p for p in sft_model.parameters() if p.requires_grad], lr=shape.learning_rate)
    completion = torch.randint(0, text_vocab, (shape.sft_batch, shape.sft_completion_tokens), generator=generator)
    batch = Batch.make(config, prompt, pixel_values, grid, shape.sft_batch, device, extra=completion)
    labels = batch["input_ids"].clone()
    labels[:, : prompt.numel()] = -100  # completion-only loss
    reset_peak(device)
    sft_step(sft_model, optimizer, batch, labels, autocast)  # warm-up: optimizer states appear here
    sft_s = [timed(device, sft_step, sft_model, optimizer, batch, labels, autocast)[0] for _ in range(args.repeats)]
    tokens = batch["input_ids"].numel()
    result["sft_lora"] = {
        "rows": shape.sft_batch, "tokens_per_row": batch["input_ids"].shape[1],
        "trainable_parameters": sum(p.numel() for p in sft_model.parameters() if p.requires_grad),
        "micro_batch_s": spread(sft_s), "tokens_per_s_median": round(tokens / statistics.median(sft_s), 1),
        "optimizer_step_s_estimate": round(shape.sft_grad_accum * statistics.median(sft_s), 3),
        "peak_memory_gb": peak_gb(device),
    }
    del optimizer, batch, labels
    model = sft_model.unload()  # the base again, adapter removed unmerged

    # --- GRPO-LoRA at 4 and num_generations generations, then the merge -------------------------------------------
    grpo_model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **shape.grpo_lora))
    optimizer = torch.optim.AdamW([p for p in grpo_model.parameters() if p.requires_grad], lr=shape.learning_rate)
    result["grpo_lora"] = {"trainable_parameters": sum(p.numel() for p in grpo_model.parameters() if p.requires_grad)}
    for generations in shape.generations:
        prompt_batch = Batch.make(config, prompt, pixel_values, grid, generations, device)
        reset_peak(device)
        grpo_step(grpo_model, optimizer, config, prompt_batch, shape, generations, device, autocast)  # warm-up
        steps = [grpo_step(grpo_model, optimizer, config, prompt_batch, shape, generations, device, autocast)
                 for _ in range(args.repeats)]
        result["grpo_lora"][f"generations_{generations}"] = {
            "completion_tokens": shape.completion_tokens,
            **{key: spread([s[key] for s in steps]) for key in steps[0]},
            "peak_memory_gb": peak_gb(device),
        }
    del optimizer
    reset_peak(device)
    merge_s, model = timed(device, grpo_model.merge_and_unload)
    result["merge_s"] = round(merge_s, 3)
    result["merge_peak_memory_gb"] = peak_gb(device)

    # --- vLLM, where installed: in a child process (it takes the GPU's memory for itself) -------------------------
    if importlib.util.find_spec("vllm") is None:
        result["vllm"] = {"measured": False, "why": "vllm is not installed"}
    elif device != "cuda":
        result["vllm"] = {"measured": False, "why": "vLLM needs a GPU"}
    else:
        with tempfile.TemporaryDirectory(prefix="rarl-vllm-") as folder:
            model.save_pretrained(folder)
            from rarl_core.modeling import Qwen2VLImageProcessorPil

            Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=shape.max_pixels).save_pretrained(folder)
            del model, grpo_model
            reset_peak(device)
            cmd = [sys.executable, __file__, "--vllm-child", folder, json.dumps(list(shape.eval_batches)),
                   str(prompt.numel()), str(shape.completion_tokens), str(text_vocab)]
            try:
                child = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                line = [x for x in child.stdout.splitlines() if x.startswith("VLLM ")]
                if child.returncode or not line:
                    raise RuntimeError((child.stdout + child.stderr)[-1500:])
                tps = json.loads(line[-1][5:])
                result["vllm"] = {"measured": True, "decode_tokens_per_s": tps,
                                  "ratio_to_bound": {b: round(v / (int(b) * bandwidth / weight_bytes), 3)
                                                     for b, v in tps.items()},
                                  "note": "text-only prompts of the same length, fixed-length greedy decoding"}
            except Exception as err:  # vLLM is optional: report why, keep the rest of the profile
                result["vllm"] = {"measured": False, "why": f"failed: {str(err)[-800:]}"}

    write_result("gpu_profile-tiny" if args.tiny else "gpu_profile", result, args.out)
    return result


if __name__ == "__main__":
    main()
