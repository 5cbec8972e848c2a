"""Evaluation generation: batched (left-padded batches of 8) vs one question at a time, same model, same questions.

Both runs use `rarl_core.evaluate.generate` (greedy, the reasoning prompt, evaluate.max_new_tokens from params.yaml)
on the same questions; the batch sizes alternate within each repeat so that a change of machine load hits both.
Greedy outputs must agree, so the check that left padding changes nothing comes with the timing.

Model: --model PATH, else the SFT model at paths.sft_model when it exists (it stops at end-of-sequence, as a real
model does), else a tiny Qwen2-VL built into a temporary folder with the tiny_model stage's function.
Questions: the first --questions of the in-domain test split when data/prepared exists, else synthetic ones.

Usage: python benchmarks/eval_generation.py [--repeats 3] [--questions 32] [--model PATH]
Writes benchmarks/results/eval_generation-<date>.json and prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's rarl_core

from rarl_core.config import load_config  # noqa: E402
from rarl_core.evaluate import generate, load_for_eval  # noqa: E402
from rarl_core.prompts import inference_prompt, load_templates  # noqa: E402

from _common import RESULTS, rates, write_result  # benchmarks/_common.py

BATCHED = 8


def build_tiny(cfg, folder: Path) -> str:
    """The embedded default model, built as the tiny_model stage builds it (random weights)."""
    from rarl_core.tiny_model import build_tiny_model

    templates = load_templates()
    corpus = [*templates["inference"].values(), *templates["styles"].values(), "Is there a lesion? yes no"] * 20
    with contextlib.redirect_stdout(io.StringIO()):
        build_tiny_model(cfg.tiny_model, corpus, folder / "tiny", cfg.model.max_pixels)
    return str(folder / "tiny")


def questions(cfg, n: int, folder: Path) -> pd.DataFrame:
    """The first n in-domain test questions, or n synthetic ones on plain-colour images."""
    from rarl_core.schema import load_split

    prepared = Path(cfg.paths.prepared)
    if (prepared / cfg.data.in_domain[0] / "data.parquet").is_file():
        return load_split(prepared, cfg.data.in_domain[0], "test").head(n)
    rows = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.new("RGB", (112, 112), (17 * i % 256, 80, 160)).save(path)
        rows.append({"question": "Is there a lesion?" + " Look closely." * (i % 4), "choices": [],
                     "image_path": str(path)})
    return pd.DataFrame(rows)


def timed(model, processor, prompts, images, max_new_tokens: int, batch_size: int) -> tuple[float, list[str]]:
    with contextlib.redirect_stderr(io.StringIO()):  # no progress bars in the timing output
        start = time.perf_counter()
        out = generate(model, processor, prompts, images, max_new_tokens, batch_size)
    return time.perf_counter() - start, [g["completion"] for g in out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON")
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--model", help="a model folder (default: paths.sft_model if present, else a tiny model)")
    args = parser.parse_args()
    cfg = load_config()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_path = args.model or (cfg.paths.sft_model if Path(cfg.paths.sft_model).is_dir() else build_tiny(cfg, folder))
        data = questions(cfg, args.questions, folder)
        model, processor = load_for_eval(model_path, cfg.model, "cpu")
        templates = load_templates()
        prompts = [inference_prompt("reasoning", q, c, templates) for q, c in zip(data["question"], data["choices"])]
        images = list(data["image_path"])
        timed(model, processor, prompts[:BATCHED], images[:BATCHED], cfg.evaluate.max_new_tokens, BATCHED)  # warm-up
        seconds: dict[int, list[float]] = {1: [], BATCHED: []}
        outputs: dict[int, list[str]] = {}
        for _ in range(args.repeats):
            for batch_size in (1, BATCHED):
                s, outputs[batch_size] = timed(model, processor, prompts, images, cfg.evaluate.max_new_tokens,
                                               batch_size)
                seconds[batch_size].append(s)
    n = len(prompts)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                    "python": platform.python_version(), "torch": torch.__version__},
        "model": model_path if args.model or model_path == cfg.paths.sft_model else "tiny (built, random weights)",
        "questions": n, "max_new_tokens": cfg.evaluate.max_new_tokens, "repeats": args.repeats,
        "one_at_a_time": rates(seconds[1], n, "questions", 2),
        f"batch_{BATCHED}": rates(seconds[BATCHED], n, "questions", 2),
        "speedup_median": round(statistics.median(seconds[1]) / statistics.median(seconds[BATCHED]), 2),
        "identical_greedy_outputs": outputs[1] == outputs[BATCHED],
    }
    path = write_result("eval_generation", result, args.out)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
