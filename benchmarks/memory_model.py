"""A measured memory model of the training and evaluation stages at Qwen2-VL-2B-Instruct's full depth, on CPU, and
what it predicts for the GPU profiles.

Why: profiles/qwen2vl-2b-a100-40gb.yaml carried a memory estimate no run of the product had checked (issue 14).
This runs the product's own stage functions (benchmarks/_stage_runs.py: train_sft, train_grpo, evaluate_model) on
the real architecture, vocabulary and tokenizer with random weights (tiny_model.preset qwen2vl-2b at 28 text layers
and 32 vision blocks, bfloat16, 256-token images), each size in its own process, and records each step's peak
resident memory (VmHWM, reset per step) and seconds. Per stage it fits

    peak = fixed + c x tokens

over the sizes, both terms free, where tokens are those of one micro-batch (prompt, image and completion of every
row). `fixed` is reported beside what it should come close to (process floor + weights + LoRA adapter + its
gradients and AdamW states); it is not taken from the memory held when training begins, which misses the weights
(see training_model). The LM head over the 151,936-token vocabulary is also measured alone (TRL's fused head, the
kernel both trainers call, at three token counts) to show how much of `c` the CPU's logits are. The model's error
is reported on every measured size, then the fit predicts each GPU profile's peak.

CPU to GPU: the same dtype (bfloat16 weights and activations, fp32 LoRA and AdamW) and the same gradient
checkpointing, so weights, optimizer and activations per token carry over; the process floor (Python, torch) stays
in host memory. `c` is an upper bound on a GPU: CPU resident memory holds malloc's slack, and without Triton TRL
scores every position and folds each [tokens x 32768] tile in fp32 torch ops, where on CUDA it scores only the
completion positions in a fused bf16 kernel. The CUDA context (~0.5 GB) and the caching allocator's slack (15% over
max_memory_allocated) are assumptions: benchmarks/gpu_profile.py measures the real figures on a GPU. The sizes
measured reach about 1,400 tokens a micro-batch; the profiles' GRPO micro-batch is about 6,700, so its prediction is
an extrapolation of the fitted line.

The parent process imports no torch; every measurement is a child (`--child`), watched: a child whose resident set
passes --max-rss-gb is killed and reported. With --max-load, each full-depth child waits for the 1-minute load
average to drop (the machine is shared).

    python benchmarks/memory_model.py                 # full depth (about an hour on one thread), 14 GB ceiling
    python benchmarks/memory_model.py --size tiny     # the embedded tiny model: a smoke test of the same code
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from _common import header, write_result  # benchmarks/_common.py
from _stage_runs import REPO, proc_status_bytes, workspace_params

sys.path.insert(0, str(REPO))
GB = 1e9
OPTIMIZER_BYTES = 12  # per trainable parameter: an fp32 gradient and AdamW's two fp32 moments
PROFILES = {"qwen2vl-2b-a100-40gb": 40, "qwen2vl-2b-24gb": 24}  # profiles/<name>.yaml and the card's GB
CUDA_CONTEXT_GB = 0.5     # assumption: CUDA context and kernels, outside torch's allocator
ALLOCATOR_SLACK = 0.15    # assumption: caching allocator's reserved-over-allocated

# What each size changes (the 40 GB profile supplies everything else: LoRA ranks, checkpointing, beta, dtype).
SIZES = {
    "full": {
        "model": {"tiny_model": {"preset": "qwen2vl-2b", "num_layers": 28, "vision_depth": 32},
                  "model": {"min_pixels": 200704, "max_pixels": 200704}},
        "sft": [{"batch_size": 1}, {"batch_size": 2}, {"batch_size": 4}],
        "grpo": [{"num_generations": 2, "batch_size": 2, "max_completion_length": 32},
                 {"num_generations": 4, "batch_size": 4, "max_completion_length": 32},
                 {"num_generations": 2, "batch_size": 2, "max_completion_length": 128}],
        "evaluate": [{"batch_size": 1}, {"batch_size": 4}, {"batch_size": 8}],
        "eval_new_tokens": 32, "logits_tokens": [256, 1024, 2048],
        "dtype_check": {"sft": {"batch_size": 1}, "other_dtype": "float32"},
    },
    "tiny": {
        "model": {"tiny_model": {"preset": "embedded", "vision_pretrain": {"steps": 10, "images": 64}},
                  "model": {"dtype": "float32"}},
        "sft": [{"batch_size": 2}, {"batch_size": 8}],
        "grpo": [{"num_generations": 2, "batch_size": 2, "max_completion_length": 8},
                 {"num_generations": 4, "batch_size": 4, "max_completion_length": 8}],
        "evaluate": [{"batch_size": 1}, {"batch_size": 4}],
        "eval_new_tokens": 8, "logits_tokens": [64, 256],
        "dtype_check": {"sft": {"batch_size": 2}, "other_dtype": "bfloat16"},
    },
}
STEPS = {"max_steps": 2, "grad_accum": 1, "save_steps": 1000, "logging_steps": 1, "gradient_checkpointing": True}
SHORT = {"sft": STEPS, "grpo": {**STEPS, "variants": {"rarl": {"format": 1.0, "accuracy": 1.0, "reasoning": 1.0}}},
         "evaluate": {"image_controls": []},  # each control is one more generate pass of the same size
         "augment": {"variants_per_question": 1}}


# ----------------------------------------------------------------------------------------------------------------
# Children: one measurement each, in a fresh process
# ----------------------------------------------------------------------------------------------------------------


def child(kind: str, params: Path, spec: dict) -> dict:
    """Run one measurement in this process; the parent reads the returned dict from the last stdout line."""
    import dataclasses

    import torch

    torch.set_num_threads(spec["threads"])
    from _stage_runs import Probe, prepare_inputs, run_evaluate, run_grpo, run_sft
    from rarl_core.config import load_config

    probe = Probe("cpu")
    if kind == "inputs":
        prepare_inputs(params)
        return {"peak_bytes": proc_status_bytes("VmHWM")}
    cfg = load_config(params)
    section = spec.get("section", {})
    if kind == "probes":  # token counts of the data, and the fused LM head alone at each token count
        return {"lengths": token_lengths(cfg), "logits": [logits_term(cfg, n, probe) for n in spec["tokens"]]}
    with tempfile.TemporaryDirectory(prefix=f"rarl-memory-model-{kind}-") as tmp:
        tmp = Path(tmp)
        if kind == "sft":
            cfg = dataclasses.replace(cfg, sft=dataclasses.replace(cfg.sft, **section),
                                      model=dataclasses.replace(cfg.model, **spec.get("model", {})))
            out = run_sft(cfg, probe, tmp / "sft", tmp / "work")
        elif kind == "grpo":
            cfg = dataclasses.replace(cfg, grpo=dataclasses.replace(cfg.grpo, **section))
            out = run_grpo(cfg, "rarl", Path(cfg.model.name_or_path), probe, tmp / "adapter", tmp / "work")
        elif kind == "evaluate":
            evaluate = dataclasses.replace(cfg.evaluate, **section, max_questions=section["batch_size"],
                                           max_new_tokens=spec["new_tokens"])
            out = run_evaluate(dataclasses.replace(cfg, evaluate=evaluate), "base", cfg.model.name_or_path, probe)
        else:
            raise SystemExit(f"unknown child {kind}")
    from transformers import AutoConfig

    text = AutoConfig.from_pretrained(cfg.model.name_or_path).get_text_config()
    out["parameters"] = parameter_count(cfg.model.name_or_path)
    out["kv_bytes_per_token"] = text.num_hidden_layers * 2 * text.num_key_value_heads * (
        text.hidden_size // text.num_attention_heads) * torch.finfo(getattr(torch, cfg.model.dtype)).bits // 8
    return out


def parameter_count(folder: str) -> int:
    """Parameters of a saved model (tied ones once, as saved), from its safetensors headers: no load."""
    from safetensors import safe_open

    total = 0
    for path in Path(folder).glob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():
                count = 1
                for dim in f.get_slice(key).get_shape():
                    count *= dim
                total += count
    return total


def token_lengths(cfg) -> dict:
    """Tokens per training row at the configured pixel bounds: image tokens, prompt text and target, of the augmented
    set (rarl_core.training.sequence_lengths, the length filter's own count)."""
    import statistics

    from rarl_core.modeling import load_processor
    from rarl_core.training import sequence_lengths
    from _stage_runs import augmented_rows

    rows = augmented_rows(cfg)
    processor = load_processor(cfg.model.name_or_path, cfg.model.min_pixels, cfg.model.max_pixels)
    prompt = sequence_lengths(rows, processor, with_target=False)
    full = sequence_lengths(rows, processor, with_target=True)
    image = processor._get_num_multimodal_tokens(image_sizes=[(448, 448)])["num_image_tokens"][0]
    from rarl_core.evaluate import eval_sets
    from rarl_core.prompts import inference_prompt, load_templates

    questions = eval_sets(cfg)[cfg.data.in_domain[0]].head(16).copy()
    templates = load_templates()
    questions["prompt_text"] = [inference_prompt(cfg.evaluate.prompts[0], q, c, templates)
                                for q, c in zip(questions["question"], questions["choices"])]
    return {"image_tokens_448px": image, "eval_prompt_tokens": sequence_lengths(questions, processor, False),
            "prompt_tokens": {"median": statistics.median(prompt), "max": max(prompt)},
            "row_tokens": {"median": statistics.median(full), "max": max(full)}, "rows": len(rows)}


def logits_term(cfg, tokens: int, probe) -> dict:
    """Peak memory of TRL's fused LM head alone (forward and backward, as both trainers call it) over `tokens` rows,
    the model's own vocabulary and width, frozen weight: the logits part of the per-token cost."""
    import torch
    from transformers import AutoConfig
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE, _ChunkedLogProbFunction

    text = AutoConfig.from_pretrained(cfg.model.name_or_path).get_text_config()
    dtype = getattr(torch, cfg.model.dtype)
    weight = torch.randn(text.vocab_size, text.hidden_size, dtype=dtype) * 0.02
    hidden = torch.randn(tokens, text.hidden_size, dtype=dtype, requires_grad=True)
    targets = torch.randint(0, text.vocab_size, (tokens,))
    before = probe.current()
    probe.reset_peak()
    start = time.perf_counter()
    logps, entropy, *_ = _ChunkedLogProbFunction.apply(hidden, weight, None, targets, 1.0,
                                                       _CHUNKED_LOGPROB_CHUNK_SIZE, None, 1.0,
                                                       ("log_probs", "entropy"))
    (logps.sum() + entropy.sum()).backward()
    return {"tokens": tokens, "vocab": text.vocab_size, "extra_bytes": probe.peak() - before,
            "seconds": round(time.perf_counter() - start, 3)}


# ----------------------------------------------------------------------------------------------------------------
# The parent: run the children, watch them, fit, predict
# ----------------------------------------------------------------------------------------------------------------


def run_child(kind: str, params: Path, spec: dict, max_rss: float, max_load: float, log_dir: Path) -> dict:
    """One child, its resident set polled twice a second (killed above max_rss); returns its dict, or why not."""
    if max_load:  # after the first child, its own share is still in the 1-minute average
        allowed = max_load + (spec["threads"] if any(log_dir.iterdir()) else 0)
        while os.getloadavg()[0] > allowed or proc_status_bytes("MemAvailable", "meminfo") < max_rss * GB:
            print(f"  load {os.getloadavg()[0]:.2f}, available {proc_status_bytes('MemAvailable', 'meminfo') / GB:.1f}"
                  " GB: waiting", file=sys.stderr, flush=True)
            time.sleep(60)
    load = os.getloadavg()[0]
    log = log_dir / f"{kind}-{len(list(log_dir.iterdir()))}.log"
    cmd = [sys.executable, __file__, "--child", kind, "--params", str(params), "--spec", json.dumps(spec)]
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1",
           "TOKENIZERS_PARALLELISM": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    start = time.perf_counter()
    killed = []
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)

        def watch():
            while proc.poll() is None:
                try:
                    if proc_status_bytes("VmRSS", proc.pid) > max_rss * GB:
                        killed.append(True)
                        proc.kill()
                except (FileNotFoundError, AttributeError):
                    return
                time.sleep(0.5)

        threading.Thread(target=watch, daemon=True).start()
        proc.wait()
    wall = round(time.perf_counter() - start, 1)
    text = log.read_text(errors="replace")
    record = {"kind": kind, "spec": {k: v for k, v in spec.items() if k != "threads"}, "wall_s": wall,
              "load_before": round(load, 2)}
    if killed:
        return record | {"failed": f"killed: resident set above {max_rss} GB"}
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        return record | {"failed": f"exit {proc.returncode}", "tail": text.splitlines()[-20:]}
    print(f"  {kind} {record['spec']}: {wall} s", file=sys.stderr, flush=True)
    return record | json.loads(lines[-1][len("RESULT "):])


def fit_through(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y = c x through the origin."""
    return sum(x * y for x, y in points) / sum(x * x for x, _ in points)


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of y = a + c x."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - slope * mx, slope


def training_model(runs: list[dict], logits_per_token: float, dtype_bytes: int) -> dict:
    """Fit one training stage: peak = intercept + c x tokens, both fitted over the sizes (as for evaluation).

    The intercept is reported beside what it should come close to: the process floor + weights + adapter +
    optimizer. It is not pinned to the memory measured when training begins, because that figure misses the weights:
    bfloat16 safetensors load as file-backed pages that are not resident until the first forward touches them (at
    full depth 0.8 GB held at train begin against 4.4 GB of weights), and a fit through it charged those 4.4 GB to
    the tokens (errors of -49% to +22% on the measured sizes, kept in the JSON as `through_held_error_pct`)."""
    points, above_held, rows = [], [], []
    for run in runs:
        tokens = max(run["tokens_per_step"])
        held = run["at_train_begin_bytes"]
        optimizer = OPTIMIZER_BYTES * run["trainable_parameters"]
        peak = max(run["step_peak_bytes"])
        points.append((tokens, peak))
        above_held.append((tokens, peak - held - optimizer))
        rows.append({"size": run["spec"]["section"], "tokens": tokens, "held_at_train_begin_gb": held / GB,
                     "optimizer_gb": optimizer / GB, "peak_gb": peak / GB,
                     "seconds_per_step": run["step_seconds"][-1], "first_step_s": run["step_seconds"][0]})
    intercept, c = fit_line(points)
    through_held = fit_through(above_held)
    for row, (tokens, _) in zip(rows, points):
        predicted = (intercept + c * tokens) / GB
        old = row["held_at_train_begin_gb"] + row["optimizer_gb"] + through_held * tokens / GB
        row.update(predicted_gb=predicted, error_gb=predicted - row["peak_gb"],
                   error_pct=100 * (predicted - row["peak_gb"]) / row["peak_gb"],
                   through_held_error_pct=100 * (old - row["peak_gb"]) / row["peak_gb"])
    weights = runs[0]["parameters"] * dtype_bytes
    trainable = runs[0]["trainable_parameters"]
    return {"intercept_gb": intercept / GB, "per_token_bytes": c, "logits_per_token_bytes_cpu": logits_per_token,
            "weights_gb": weights / GB, "adapter_and_optimizer_gb": trainable * (4 + OPTIMIZER_BYTES) / GB,
            "trainable_parameters": trainable, "sizes": rows}


def evaluate_model_fit(runs: list[dict], dtype_bytes: int) -> dict:
    """peak = held + c x (batch x (prompt + new tokens)), both fitted: evaluate_model loads its model itself, so
    what it holds before generating (weights, processor, tokenizer) is not measured apart; the fitted intercept is
    reported beside the process floor + weights it should come close to."""
    points, rows = [], []
    for run in runs:
        new = max(run["completion_tokens"])
        tokens = run["batch_size"] * (max(run["eval_prompt_tokens"][: run["batch_size"]]) + new)
        points.append((tokens, run["peak_bytes"]))
        seconds_per_batch = run["generate_seconds"] / max(1, run.get("answers", run["questions"]) // run["batch_size"])
        rows.append({"size": run["spec"]["section"], "tokens": tokens, "before_gb": run["before_bytes"] / GB,
                     "peak_gb": run["peak_bytes"] / GB, "seconds_per_batch": round(seconds_per_batch, 2),
                     "new_tokens": new,
                     "generated_tokens_per_s": round(sum(run["completion_tokens"]) / run["generate_seconds"], 2)})
    held, c = fit_line(points)
    for row, (tokens, _) in zip(rows, points):
        predicted = (held + c * tokens) / GB
        row.update(predicted_gb=predicted, error_gb=predicted - row["peak_gb"],
                   error_pct=100 * (predicted - row["peak_gb"]) / row["peak_gb"])
    weights = runs[0]["parameters"] * dtype_bytes
    return {"held_gb": held / GB, "floor_gb": runs[0]["before_bytes"] / GB,
            "floor_plus_weights_gb": (runs[0]["before_bytes"] + weights) / GB,
            "per_token_bytes": c, "kv_bytes_per_token": runs[0]["kv_bytes_per_token"], "sizes": rows}


def predict_profile(name: str, card_gb: float, fitted: dict, lengths: dict) -> dict:
    """A GPU profile's peak (torch.cuda.max_memory_allocated) by the fitted model, and what the card needs."""
    from rarl_core.config import config_from_dict
    from _stage_runs import apply_values

    path = REPO / "profiles" / f"{name}.yaml"
    if not path.is_file():
        return {"profile": str(path.relative_to(REPO)), "missing": True}
    cfg = config_from_dict(apply_values(yaml.safe_load((REPO / "params.yaml").read_text()),
                                        yaml.safe_load(path.read_text())))
    image = cfg.model.max_pixels // (28 * 28)  # real images are downscaled to max_pixels: the worst case
    text_prompt = lengths["prompt_tokens"]["max"] - lengths["image_tokens_448px"]
    text_row = lengths["row_tokens"]["max"] - lengths["image_tokens_448px"]
    out = {"profile": str(path.relative_to(REPO)), "card_gb": card_gb, "image_tokens": image}
    stages = {
        "sft": (cfg.sft.batch_size * (image + text_row), cfg.sft.batch_size * (text_row - text_prompt)),
        "grpo": (cfg.grpo.batch_size * (image + text_prompt + cfg.grpo.max_completion_length),
                 cfg.grpo.batch_size * cfg.grpo.max_completion_length),
    }
    floor = fitted["evaluate"]["floor_gb"]  # the process itself (Python, torch): host memory on a GPU
    for stage, (tokens, scored) in stages.items():
        f = fitted[stage]
        fixed = f["intercept_gb"] - floor  # weights, adapter, optimizer and what a step holds whatever its size
        per_token = f["per_token_bytes"] * tokens / GB
        allocated = fixed + per_token
        out[stage] = {"tokens_per_micro_batch": tokens, "scored_tokens": scored, "fixed_gb": round(fixed, 2),
                      "per_token_gb": round(per_token, 2), "allocated_gb": round(allocated, 2),
                      "card_needs_gb": round(allocated * (1 + ALLOCATOR_SLACK) + CUDA_CONTEXT_GB, 2)}
    ev = fitted["evaluate"]
    text_eval = max(lengths["eval_prompt_tokens"]) - lengths["image_tokens_448px"]
    tokens = cfg.evaluate.batch_size * (image + text_eval + cfg.evaluate.max_new_tokens)
    allocated = ev["held_gb"] - floor + max(ev["per_token_bytes"], 0) * tokens / GB
    out["evaluate"] = {"tokens_per_batch": tokens, "allocated_gb": round(allocated, 2),
                       "card_needs_gb": round(allocated * (1 + ALLOCATOR_SLACK) + CUDA_CONTEXT_GB, 2)}
    worst = max(out[s]["card_needs_gb"] for s in ("sft", "grpo", "evaluate"))
    out["worst_card_needs_gb"] = worst
    out["margin_gb"] = round(card_gb - worst, 2)
    return out


def analyse(result: dict) -> dict:
    """The fits and the profiles' predictions from a result's measurements (a stage with a failed size is fitted on
    the sizes that ran, when at least two did); `--refit` reruns this alone on a saved JSON."""
    runs, lengths, logits = result["runs"], result["token_lengths"], result["logits_runs"]
    measured = [result["inputs"], result.get("probes", {}), *(r for rs in runs.values() for r in rs)]
    result["failed"] = [r for r in measured if "failed" in r]
    if not logits or not lengths:
        return result
    dtype_bytes = 2 if result["model"]["model"]["dtype"] in ("bfloat16", "float16") else 4
    logits_per_token = fit_through([(r["tokens"], r["extra_bytes"]) for r in logits])
    result["logits_per_token_bytes_cpu"] = logits_per_token
    fitted = {}
    for part, fit in (("sft", training_model), ("grpo", training_model), ("evaluate", evaluate_model_fit)):
        ok = [r for r in runs.get(part, []) if "failed" not in r]
        if len(ok) < 2:
            continue
        if part == "evaluate":
            for run in ok:
                run["eval_prompt_tokens"] = lengths["eval_prompt_tokens"]
            fitted[part] = fit(ok, dtype_bytes)
        else:
            fitted[part] = fit(ok, logits_per_token, dtype_bytes)
    result["fit"] = fitted
    if {"sft", "grpo", "evaluate"} <= set(fitted) and result["size"] == "full":
        result["predictions"] = {n: predict_profile(n, gb, fitted, lengths) for n, gb in PROFILES.items()}
    result["assumptions"] = {"cuda_context_gb": CUDA_CONTEXT_GB, "allocator_slack": ALLOCATOR_SLACK,
                             "per_token": "as measured on CPU (same dtype and checkpointing), CPU-style logits "
                                          "included: an upper bound for a GPU, whose fused LM head scores fewer rows "
                                          "in smaller tiles"}
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("full", "tiny"), default="full",
                        help="full: Qwen2-VL-2B at 28/32 layers, bfloat16; tiny: the embedded model (smoke test)")
    parser.add_argument("--only", default="sft,grpo,evaluate,dtype_check", help="comma-separated parts")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each child")
    parser.add_argument("--max-rss-gb", type=float, default=14.0, help="kill a child whose resident set passes this")
    parser.add_argument("--max-load", type=float, default=0.0,
                        help="wait before each child until the 1-minute load is below this (0: do not wait)")
    parser.add_argument("--workspace", type=Path, help="keep the data and the model folder here (reused if present)")
    parser.add_argument("--repeats", type=int, default=1, help="accepted for run.py; each size runs once")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for the JSON")
    parser.add_argument("--refit", type=Path, help="re-fit and re-predict a saved result JSON (no measuring)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--params", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.params, json.loads(args.spec))), flush=True)
        return {}
    if args.refit:
        result = analyse(json.loads(args.refit.read_text()))
        write_result(f"memory_model-{result['size']}", result, args.out)
        return result

    load_before = os.getloadavg()
    size = SIZES[args.size]
    parts = args.only.split(",")
    overrides = {**size["model"]}
    for section, values in SHORT.items():
        overrides[section] = {**overrides.get(section, {}), **values}
    keep = args.workspace
    with tempfile.TemporaryDirectory(prefix="rarl-memory-model-") as tmp:
        root = (keep or Path(tmp)).resolve()
        params = workspace_params(root, [REPO / "profiles" / "qwen2vl-2b-a100-40gb.yaml"], overrides)
        cfg = yaml.safe_load(params.read_text())
        logs = root / "logs"
        logs.mkdir(exist_ok=True)
        spec = {"threads": args.threads}
        go = lambda kind, **extra: run_child(kind, params, spec | extra, args.max_rss_gb,  # noqa: E731
                                             args.max_load if args.size == "full" else 0, logs)
        built = (Path(cfg["paths"]["tiny_model"]) / "config.json").is_file()
        inputs = {"reused": True} if built else go("inputs")
        if "failed" in inputs:
            raise SystemExit(f"building the inputs failed: {inputs}")
        probes = go("probes", tokens=size["logits_tokens"])
        lengths, logits = probes.get("lengths", {}), probes.get("logits", [])
        runs = {part: [go(part, section=s, new_tokens=size["eval_new_tokens"]) for s in size[part]]
                for part in ("sft", "grpo", "evaluate") if part in parts}
        dtype_check = {}
        if "dtype_check" in parts and "sft" in runs:  # the same SFT size in the other dtype, beside the fitted one
            check = size["dtype_check"]
            same = next(r for r in runs["sft"] if r["spec"]["section"] == check["sft"])
            other = go("sft", section=check["sft"], model={"dtype": check["other_dtype"]})
            dtype_check = {dtype: {"seconds_per_step": r.get("step_seconds"), "peak_gb": max(r["step_peak_bytes"]) / GB
                                   if "step_peak_bytes" in r else None, "failed": r.get("failed")}
                           for dtype, r in ((cfg["model"]["dtype"], same), (check["other_dtype"], other))}
    result = header("memory_model", load_before) | {
        "size": args.size, "threads": args.threads, "max_rss_gb": args.max_rss_gb,
        "model": {k: cfg[k] for k in ("tiny_model", "model")},
        "profile_base": "profiles/qwen2vl-2b-a100-40gb.yaml (LoRA ranks, checkpointing, beta, dtype), sizes below",
        "inputs": inputs, "probes": {k: v for k, v in probes.items() if k not in ("lengths", "logits")},
        "token_lengths": lengths, "logits_runs": logits, "runs": runs, "dtype_check": dtype_check,
    }
    result = analyse(result)
    write_result(f"memory_model-{args.size}", result, args.out)
    if result.get("failed"):
        raise SystemExit(f"{len(result['failed'])} measurement(s) failed: see the JSON")
    return result


if __name__ == "__main__":
    main()
