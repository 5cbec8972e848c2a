"""GPU profile of the product's own stages at a GPU profile (default profiles/qwen2vl-2b-a100-40gb.yaml) on
Qwen2-VL-2B-Instruct's real architecture with random weights: peak torch.cuda.max_memory_allocated per stage and per
training step, step times, and decode throughput against the memory-bandwidth bound.

Why the stages and not hand-written steps: the profile's memory figures are claims about the product, so the
product runs (benchmarks/_stage_runs.py): the tiny_model stage builds Qwen2-VL-2B-Instruct (preset qwen2vl-2b at 28
text layers and 32 vision blocks: the hub config, vocabulary 151,936 with tied embeddings, the real tokenizer and
chat template; nothing downloaded, and weights' values change no memory figure), then train_sft, train_grpo (the
product's rewards and vision-token ban), merge_adapter and evaluate_model run with the profile's values. Only the
step counts and the number of evaluation questions are cut. Images are 256 tokens (min_pixels = max_pixels = the
profile's max_pixels): the starter set's 112-pixel pictures would otherwise stay 16 tokens, and real datasets'
images are downscaled to max_pixels.

Decode throughput: rarl_core.evaluate.generate (the evaluate stage's batched generation) at batch 1,
grpo.num_generations and evaluate.batch_size, run for 1 and for N new tokens so that prefill is taken out. Each
decoded token reads every language-model weight once, so tokens/s <= batch x bandwidth / weight bytes, with the
bandwidth measured here by a 1 GiB device-to-device copy; measured / bound says how much of it HF generate uses.

    python benchmarks/gpu_profile.py [--profile profiles/qwen2vl-2b-24gb.yaml] [--steps 3]   # needs a CUDA GPU
    python benchmarks/gpu_profile.py --tiny        # the embedded tiny model on CPU: a smoke test of the same code

Nothing here has run on a GPU yet (none was lent to the project when it was written); the CPU figures of the same
stages at full depth are benchmarks/memory_model.py's.
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
from datetime import date
from pathlib import Path

from _common import spread, write_result  # benchmarks/_common.py
from _stage_runs import REPO, Probe, prepare_inputs, run_evaluate, run_grpo, run_merge, run_sft, workspace_params

sys.path.insert(0, str(REPO))
PROFILE = REPO / "profiles" / "qwen2vl-2b-a100-40gb.yaml"
GB = 1e9


def overrides(profile_cfg: dict, tiny: bool, steps: int, questions: int) -> dict:
    """What the benchmark changes in the profile: the model built offline, real-size images, fewer steps."""
    cut = {"sft": {"max_steps": steps, "save_steps": 1000, "logging_steps": 1},
           "grpo": {"max_steps": steps, "save_steps": 1000, "logging_steps": 1,
                    "variants": {"rarl": {"format": 1.0, "accuracy": 1.0, "reasoning": 1.0}}},
           "evaluate": {"max_questions": questions, "prompts": ["reasoning"]},
           "augment": {"variants_per_question": 1}}
    if tiny:  # the embedded default, float32 on CPU, tiny sizes
        return cut | {"tiny_model": {"preset": "embedded", "vision_pretrain": {"steps": 10, "images": 64}},
                      "model": {"dtype": "float32"},
                      "sft": {**cut["sft"], "batch_size": 2, "grad_accum": 1},
                      "grpo": {**cut["grpo"], "batch_size": 2, "num_generations": 2, "grad_accum": 1,
                               "max_completion_length": 8},
                      "evaluate": {**cut["evaluate"], "batch_size": 4, "max_new_tokens": 8}}
    pixels = profile_cfg["model"]["max_pixels"]
    return cut | {"tiny_model": {"preset": "qwen2vl-2b", "num_layers": 28, "vision_depth": 32},
                  "model": {"min_pixels": pixels, "max_pixels": pixels}}


def copy_bandwidth(device: str, nbytes: int, iters: int = 20) -> float:
    """Bytes per second moved by a device-to-device copy (each byte read once and written once)."""
    import torch

    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    Probe(device).sync()
    start = time.perf_counter()
    for _ in range(iters):
        dst.copy_(src)
    Probe(device).sync()
    return 2 * nbytes * iters / (time.perf_counter() - start)


def decode_throughput(cfg, model_path: str, batches: list[int], new_tokens: int, repeats: int, device: str,
                      bandwidth: float) -> dict:
    """Decode tokens/s of rarl_core.evaluate.generate (greedy) against the bandwidth bound, prefill taken out."""
    import pandas as pd

    from rarl_core.evaluate import eval_sets, generate, load_for_eval
    from rarl_core.prompts import inference_prompt, load_templates

    model, processor = load_for_eval(model_path, cfg.model, device)
    text = model.model.language_model if hasattr(model.model, "language_model") else model.model
    seen = {}
    for p in [*text.parameters(), *model.lm_head.parameters()]:
        seen[p.data_ptr()] = p.numel() * p.element_size()
    weight_bytes = sum(seen.values())
    frame: pd.DataFrame = next(iter(eval_sets(cfg).values()))
    templates = load_templates()
    out = {"language_model_weight_bytes": weight_bytes}
    for batch in batches:
        rows = frame.head(1).loc[[frame.index[0]] * batch]  # one question, `batch` times: equal prompt lengths
        prompts = [inference_prompt(cfg.evaluate.prompts[0], q, c, templates)
                   for q, c in zip(rows["question"], rows["choices"])]
        images = list(rows["image_path"])

        def timed(n: int) -> tuple[float, int]:
            Probe(device).sync()
            start = time.perf_counter()
            records = generate(model, processor, prompts, images, n, batch)
            Probe(device).sync()
            return time.perf_counter() - start, min(r["completion_tokens"] for r in records)

        timed(new_tokens)  # warm-up
        prefill = [timed(1)[0] for _ in range(repeats)]
        full = [timed(new_tokens) for _ in range(repeats)]
        decoded = min(n for _, n in full)  # random weights rarely stop early; the shortest row is what all decoded
        per_s = [batch * (decoded - 1) / max(t - statistics.median(prefill), 1e-9) for t, _ in full]
        bound = batch * bandwidth / weight_bytes
        out[str(batch)] = {"decode_tokens_per_s": spread(per_s, 1), "prefill_s": spread(prefill),
                           "new_tokens": decoded, "bound_tokens_per_s": round(bound, 1),
                           "ratio_to_bound_median": round(statistics.median(per_s) / bound, 3)}
    return out


def free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def gb(values) -> float | list[float]:
    return [round(v / GB, 3) for v in values] if isinstance(values, list) else round(values / GB, 3)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, default=PROFILE, help="the GPU profile whose values run")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps of sft and grpo (the first warms up)")
    parser.add_argument("--questions", type=int, default=32, help="evaluation questions")
    parser.add_argument("--repeats", type=int, default=3, help="timed generate calls per batch size")
    parser.add_argument("--tiny", action="store_true", help="the embedded tiny model at tiny sizes, float32, CPU")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for the JSON")
    args = parser.parse_args(argv)

    import torch
    import yaml

    if not torch.cuda.is_available() and not args.tiny:
        print("gpu_profile: no CUDA GPU here. It profiles the product's stages on a GPU; `--tiny` runs the same code "
              "at tiny size on CPU to check it.", file=sys.stderr)
        raise SystemExit(2)
    import peft
    import transformers
    import trl

    from rarl_core.config import load_config

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    probe = Probe(device)
    profile_cfg = yaml.safe_load(args.profile.read_text())
    result = {
        "benchmark": "gpu_profile", "date": date.today().isoformat(), "machine": platform.node(),
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({platform.processor() or 'unknown'})",
        "profile": str(args.profile.resolve().relative_to(REPO)) if args.profile.resolve().is_relative_to(REPO)
        else str(args.profile),
        "model": "embedded tiny Qwen2-VL, random weights" if args.tiny else
                 "Qwen2-VL-2B-Instruct built by the tiny_model stage (preset qwen2vl-2b, 28/32 layers), random weights",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                     "trl": trl.__version__, "cuda": torch.version.cuda},
        "memory": "torch.cuda.max_memory_allocated" if device == "cuda" else "resident set (VmHWM)",
    }
    with tempfile.TemporaryDirectory(prefix="rarl-gpu-profile-") as tmp:
        root = Path(tmp)
        params = workspace_params(root, [args.profile], overrides(profile_cfg, args.tiny, args.steps, args.questions))
        build_start = time.perf_counter()
        prepare_inputs(params)  # prepare, augment, tiny_model: CPU work, not measured
        result["build_inputs_s"] = round(time.perf_counter() - build_start, 1)
        cfg = load_config(params)
        result["params"] = {"sft": {k: getattr(cfg.sft, k) for k in ("mode", "batch_size", "grad_accum")},
                            "grpo": {k: getattr(cfg.grpo, k) for k in ("batch_size", "num_generations",
                                                                         "max_completion_length", "beta")},
                            "evaluate": {k: getattr(cfg.evaluate, k) for k in ("batch_size", "max_new_tokens")},
                            "model": dataclasses.asdict(cfg.model), "tiny_model": dataclasses.asdict(cfg.tiny_model)}

        stages = {}
        sft = run_sft(cfg, probe, root / "sft", root / "sft-work")
        stages["sft"] = {"step_s": spread(sft["step_seconds"][1:] or sft["step_seconds"]),
                         "step_peak_gb": gb(sft["step_peak_bytes"]),
                         "at_train_begin_gb": gb(sft["at_train_begin_bytes"]),
                         "tokens_per_step": sft["tokens_per_step"], "trainable_parameters": sft["trainable_parameters"]}
        free(device)
        grpo = run_grpo(cfg, "rarl", root / "sft", probe, root / "adapter", root / "grpo-work")
        stages["grpo"] = {"step_s": spread(grpo["step_seconds"][1:] or grpo["step_seconds"]),
                          "step_peak_gb": gb(grpo["step_peak_bytes"]),
                          "at_train_begin_gb": gb(grpo["at_train_begin_bytes"]),
                          "tokens_per_step": grpo["tokens_per_step"],
                          "completion_mean_length": grpo["completion_mean_length"],
                          "trainable_parameters": grpo["trainable_parameters"]}
        free(device)
        merge = run_merge(cfg, root / "sft", root / "adapter", root / "merged", probe)
        stages["merge"] = {"seconds": merge["seconds"], "peak_gb": gb(merge["peak_bytes"]), **merge["metrics"]}
        free(device)
        evaluation = run_evaluate(cfg, "merged", str(root / "merged"), probe)
        stages["evaluate"] = {"seconds_per_question": round(evaluation["seconds"] / evaluation["questions"], 3),
                              "seconds_per_answer": round(evaluation["generate_seconds"] / evaluation["answers"], 3),
                              "peak_gb": gb(evaluation["peak_bytes"]), "batch_size": evaluation["batch_size"],
                              "questions": evaluation["questions"], "image_controls": evaluation["image_controls"]}
        free(device)
        result["stages"] = stages
        bandwidth = copy_bandwidth(device, (1 << 30) if device == "cuda" else (64 << 20))
        result["bandwidth_gb_per_s"] = round(bandwidth / 1e9, 1)
        batches = sorted({1, cfg.grpo.num_generations, cfg.evaluate.batch_size})
        new_tokens = 8 if args.tiny else min(cfg.evaluate.max_new_tokens, 256)
        result["decode"] = decode_throughput(cfg, str(root / "merged"), batches, new_tokens, args.repeats, device,
                                             bandwidth)
    write_result("gpu_profile-tiny" if args.tiny else "gpu_profile", result, args.out)
    return result


if __name__ == "__main__":
    main()
