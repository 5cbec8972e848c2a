"""What memory_model.py and gpu_profile.py share: the product's own stage functions, run on a params file made from
profiles, with the seconds and peak memory of every training step recorded by a TrainerCallback.

Why not hand-written training steps: a benchmark of its own steps measures its own steps (issue 14). Here the work
is exactly what `dvc repro` runs (rarl_core.sft.train_sft, rarl_core.grpo.train_grpo, rarl_core.merge.merge_adapter,
rarl_core.evaluate.evaluate_model: the functions that tasks/ wraps in MLflow runs), with only the measuring added.

Memory is read the way each device counts it: on CPU the process's resident set (VmRSS, and its high-water mark
VmHWM, which writing 5 to /proc/self/clear_refs resets, so each step gets its own peak); on CUDA
torch.cuda.memory_allocated and max_memory_allocated (reset_peak_memory_stats per step). Scripts import this module
as `from _stage_runs import ...` (a script's folder is first on sys.path).
"""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------------------------
# Params: params.yaml with profiles applied, as `rarl run --profile` applies them
# ----------------------------------------------------------------------------------------------------------------


def apply_values(params: dict, values: dict) -> dict:
    """`values` ({section: {key: value}}) set key by key into a copy of `params`; nested mappings are merged, as
    `dvc exp run -S section.key.sub=value` sets them."""
    out = copy.deepcopy(params)

    def merge(into: dict, new: dict) -> None:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = copy.deepcopy(value)

    merge(out, values)
    return out


def workspace_params(root: Path, profiles: list[Path], overrides: dict) -> Path:
    """root/params.yaml: the shipped params, each profile, then `overrides`; every store under `root`, the base model
    the folder tiny_model builds there. Validated as the stages will load it."""
    from rarl_core.config import config_from_dict

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for profile in profiles:
        params = apply_values(params, yaml.safe_load(Path(profile).read_text()) or {})
    params = apply_values(params, overrides)
    params["paths"] = {k: str(root / v) for k, v in params["paths"].items()}
    params["model"]["name_or_path"] = params["paths"]["tiny_model"]
    params["mlflow"].update(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=str(root / "artifacts"))
    params["judge"]["cache_path"] = str(root / "judge.sqlite")
    config_from_dict(params)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


# ----------------------------------------------------------------------------------------------------------------
# Memory, as each device counts it
# ----------------------------------------------------------------------------------------------------------------


def proc_status_bytes(field: str, pid: int | str = "self") -> int:
    """VmRSS / VmHWM / ... of a process (pid "meminfo": MemAvailable / ... of the machine), in bytes (Linux /proc)."""
    text = Path("/proc/meminfo" if pid == "meminfo" else f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1)) * 1024


class Probe:
    """current() / reset_peak() / peak() in bytes: the process's resident set on CPU, torch's allocations on CUDA."""

    def __init__(self, device: str):
        self.device = device

    def current(self) -> int:
        if self.device == "cuda":
            import torch

            return torch.cuda.memory_allocated()
        return proc_status_bytes("VmRSS")

    def reset_peak(self) -> None:
        import gc

        gc.collect()
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)

    def peak(self) -> int:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated()
        return proc_status_bytes("VmHWM")

    def sync(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()


def step_recorder(probe: Probe):
    """A transformers TrainerCallback recording, per optimizer step, its seconds and its peak memory, plus the memory
    held when training begins (weights, adapter, data) and every log the trainer writes."""
    from transformers import TrainerCallback

    class StepRecorder(TrainerCallback):
        def __init__(self):
            self.at_train_begin = 0
            self.seconds: list[float] = []
            self.peaks: list[int] = []
            self.logs: list[dict] = []
            self.trainable = 0
            self._start = 0.0

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            probe.sync()
            self.at_train_begin = probe.current()
            if model is not None:
                self.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

        def on_step_begin(self, args, state, control, **kwargs):
            probe.reset_peak()
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            probe.sync()
            self.seconds.append(time.perf_counter() - self._start)
            self.peaks.append(probe.peak())

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logs.append(dict(logs or {}))

        def summary(self) -> dict:
            tokens = [log["num_tokens"] for log in self.logs if "num_tokens" in log]  # cumulative, every step logged
            return {"at_train_begin_bytes": self.at_train_begin, "step_seconds": [round(s, 3) for s in self.seconds],
                    "step_peak_bytes": self.peaks, "trainable_parameters": self.trainable,
                    "tokens_per_step": [int(b - a) for a, b in zip([0, *tokens], tokens)],
                    "completion_mean_length": [log["completions/mean_length"] for log in self.logs
                                               if "completions/mean_length" in log]}

    return StepRecorder()


# ----------------------------------------------------------------------------------------------------------------
# The stages
# ----------------------------------------------------------------------------------------------------------------


def prepare_inputs(params: Path) -> None:
    """prepare, augment and tiny_model, each through its stage's main (as `dvc repro` runs it, minus the process)."""
    from tasks import augment, prepare, tiny_model

    for stage in (prepare, augment, tiny_model):
        if stage.main(["--params", str(params)]):
            raise RuntimeError(f"stage {stage.__name__} failed on {params}")


def augmented_rows(cfg):
    import pandas as pd

    return pd.read_parquet(Path(cfg.paths.augmented) / "train.parquet")


def run_sft(cfg, probe: Probe, out_dir: Path, work_dir: Path) -> dict:
    """rarl_core.sft.train_sft with the step recorder; its metrics and the recorder's figures."""
    from rarl_core.sft import train_sft

    recorder = step_recorder(probe)
    metrics = train_sft(cfg, augmented_rows(cfg), out_dir, work_dir, [], callbacks=[recorder])
    return {"metrics": metrics, **recorder.summary()}


def run_grpo(cfg, variant: str, sft_model: Path, probe: Probe, out_dir: Path, work_dir: Path) -> dict:
    """rarl_core.grpo.train_grpo (the product's rewards) with the step recorder."""
    from rarl_core.grpo import train_grpo

    recorder = step_recorder(probe)
    metrics = train_grpo(cfg, variant, augmented_rows(cfg), sft_model, out_dir, work_dir, [], callbacks=[recorder])
    return {"metrics": metrics, **recorder.summary()}


def run_merge(cfg, base: Path, adapter: Path, out_dir: Path, probe: Probe) -> dict:
    """rarl_core.merge.merge_adapter: seconds and peak memory of the whole merge (load, check, merge, save)."""
    from rarl_core.merge import merge_adapter

    probe.reset_peak()
    start = time.perf_counter()
    metrics = merge_adapter(cfg, base, adapter, out_dir)
    probe.sync()
    return {"metrics": metrics, "seconds": round(time.perf_counter() - start, 3), "peak_bytes": probe.peak()}


def run_evaluate(cfg, name: str, path: str, probe: Probe) -> dict:
    """rarl_core.evaluate.evaluate_model on the first evaluation set and prompt of `cfg` (evaluate.max_questions
    questions, evaluate.batch_size at a time, with the real images and each of evaluate.image_controls): the memory
    before it, its peak, and per generated answer its token count and seconds (generate's own timing of each batch,
    prefill included)."""
    import dataclasses

    from rarl_core.evaluate import eval_sets, evaluate_model
    from rarl_core.prompts import load_templates

    first_set = cfg.data.in_domain[0]
    sets = {first_set: eval_sets(cfg)[first_set]}
    one_prompt = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, prompts=cfg.evaluate.prompts[:1]))
    records: list[dict] = []
    before = probe.current()
    probe.reset_peak()
    start = time.perf_counter()
    metrics = evaluate_model(one_prompt, name, path, sets, load_templates(),
                             lambda dataset, prompt, rows, control: records.extend(rows))
    probe.sync()
    return {"before_bytes": before, "peak_bytes": probe.peak(), "seconds": round(time.perf_counter() - start, 3),
            "questions": len(sets[first_set]), "answers": len(records), "batch_size": cfg.evaluate.batch_size,
            "image_controls": list(cfg.evaluate.image_controls),
            "completion_tokens": [r["completion_tokens"] for r in records],
            "generate_seconds": round(sum(r["seconds"] for r in records), 3),
            "accuracy": metrics[first_set][one_prompt.evaluate.prompts[0]]["accuracy"]}
