"""Does RARL beat RL and SFT? The comparison behind `rarl compare`, built so that its answer can be believed.

The paper claims RARL beats SFT by about 7.8 points in-domain, by about 27% on unseen data, and conventional RL by
about 4% on unseen data. One run per model cannot settle claims of that size: two GRPO runs that differ only in their
seed often differ by more. So the comparison
- trains every GRPO variant (RL, RARL, ...) once per seed, from the same SFT warm-up;
- adds an equal-compute control: the warm-up continued with SFT for the same training seconds, or the same tokens,
  as that seed's GRPO runs. Without it, "RL beats SFT" may only mean "more training beats less";
- evaluates every model on the same questions (in-domain and unseen sets, each inference prompt), greedy;
- puts a bootstrap 95% interval on every number that resamples seeds, then questions (rarl_core.metrics), so that
  both seed-to-seed and question-to-question variation widen it, and compares models on the same questions;
- reads each claim as "supported" (the interval of the difference excludes 0 in the claimed direction), "refuted"
  (it excludes 0 in the other direction) or "not resolved at this sample size";
- explains a result with diagnostics (rarl_core.diagnostics): format rate, consistency, yes/no collapse, reward
  components over training, judge reasoning scores.

Every unit (a GRPO variant or the control, for one seed; and each evaluation) is a DVC stage of compare/dvc.yaml, so
resume, caching and "what changed" come from DVC, and a Prefect work pool can run units on several hosts. This
module names the units and trains them; compare_analysis.py evaluates them and reads the claims, compare_report.py
renders the result.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import TrainerCallback

from rarl_core.config import Config, ConfigError

SFT = "sft"  # the warm-up model as it is
CONTROL = "sft_control"  # the warm-up continued with SFT for the GRPO runs' compute
NO_CHECKPOINTS = 10**9  # save_steps that never comes: a unit is short and DVC re-runs it whole if killed
CONTROL_MAX_STEPS = 10**6  # the control stops on its budget, never on this
CONTROL_WARMUP_STEPS = 10  # linear learning-rate warm-up of the control, in steps
SUPPORTED, REFUTED, UNRESOLVED = "supported", "refuted", "not resolved at this sample size"
CLAIMED_VARIANTS = ("rl", "rarl")  # the paper's claims name conventional RL and RARL


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: `better` beats `worse` on the `group` sets (in_domain or unseen)."""

    key: str
    better: str
    worse: str
    group: str
    paper: str


CLAIMS = (
    Claim("rarl_vs_sft_in_domain", "rarl", SFT, "in_domain", "+7.78 points over SFT (reasoning-focused tasks)"),
    Claim("rarl_vs_sft_unseen", "rarl", SFT, "unseen", "about 27% better than SFT on unseen datasets"),
    Claim("rarl_vs_rl_unseen", "rarl", "rl", "unseen", "about 4% better than conventional RL on unseen datasets"),
)


def compared_pairs(variants: Sequence[str]) -> list[tuple[str, str]]:
    """(a, b) pairs whose paired difference a - b is reported: RARL - RL, each GRPO variant - SFT and - the control,
    and the control - SFT (what the extra compute alone buys)."""
    pairs = [("rarl", "rl")] if {"rarl", "rl"} <= set(variants) else []
    pairs += [(v, SFT) for v in variants] + [(v, CONTROL) for v in variants] + [(CONTROL, SFT)]
    return pairs


def check_seed(cfg: Config, seed: int | None) -> None:
    """A comparison needs 'rl' and 'rarl' among grpo.variants (the paper's claims), and a unit's seed in
    compare.seeds; ConfigError, naming what to change, otherwise."""
    if missing := [v for v in CLAIMED_VARIANTS if v not in cfg.grpo.variants]:
        raise ConfigError(f"compare: grpo.variants lacks {missing}: the paper's claims compare 'rl' (reasoning weight "
                          f"0) and 'rarl' (reasoning weight > 0); other variants are compared beside them")
    if seed is not None and seed not in cfg.compare.seeds:
        raise ConfigError(f"--seed {seed} is not in compare.seeds {cfg.compare.seeds}")


def check_unit(cfg: Config, model: str, seed: int | None) -> None:
    """A unit is the SFT warm-up (no seed), or a GRPO variant or the control with one of compare.seeds."""
    check_seed(cfg, seed)
    if model not in (SFT, CONTROL, *cfg.grpo.variants):
        raise ConfigError(f"--model {model!r} is none of {SFT}, {CONTROL} or grpo.variants ({', '.join(cfg.grpo.variants)})")
    if (model == SFT) != (seed is None):
        raise ConfigError(f"--model {model}: the SFT warm-up takes no --seed, every other unit one")


# ----------------------------------------------------------------------------------------------------------------
# Training one unit: a GRPO variant or the SFT control, for one seed
# ----------------------------------------------------------------------------------------------------------------


class RunRecorder(TrainerCallback):
    """Keeps every log of a training run (loss, reward components per step) and the tokens it put through the model.

    Tokens are TRL's count for both trainers: GRPO adds each sampled sequence's prompt and completion tokens to
    `state.num_input_tokens_seen`; SFT logs the running `num_tokens` (non-padding tokens of every batch).
    """

    def __init__(self) -> None:
        self.logs: list[dict] = []
        self.tokens = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        self.logs.append({"step": state.global_step, **logs})
        self.tokens = max(self.tokens, int(logs.get("num_tokens") or 0))

    def on_train_end(self, args, state, control, **kwargs):
        self.tokens = max(self.tokens, int(state.num_input_tokens_seen or 0))


class Budget(TrainerCallback):
    """Stops training once its budget is spent: `seconds` of training, or `tokens` through the model.

    Checked at every log, so the control logs every step (logging_steps 1) and overshoots by at most one step.
    """

    def __init__(self, seconds: float | None = None, tokens: int | None = None) -> None:
        self.seconds, self.tokens, self.started = seconds, tokens, time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        out_of_time = self.seconds is not None and time.perf_counter() - self.started >= self.seconds
        out_of_tokens = self.tokens is not None and int((logs or {}).get("num_tokens") or 0) >= self.tokens
        if out_of_time or out_of_tokens:
            control.should_training_stop = True


def train_grpo_unit(cfg: Config, variant: str, seed: int, augmented, sft_model: Path, weights: Path,
                    work_dir: Path) -> tuple[dict, list[dict]]:
    """Train `variant` with `seed` exactly as the grpo stage does, into `weights` (the adapter), with no checkpoints
    and no tracking inside the trainer (the caller logs the recorded logs afterwards, so logging costs no training
    time). Returns the training summary (seconds, tokens, steps, reward curves) and every log.
    """
    from rarl_core.grpo import train_grpo

    grpo = dataclasses.replace(cfg.grpo, seed=seed, save_steps=NO_CHECKPOINTS)
    recorder, started = RunRecorder(), time.time()
    metrics = train_grpo(dataclasses.replace(cfg, grpo=grpo), variant, augmented, sft_model, weights, work_dir, [],
                         callbacks=[recorder])
    summary = {"seconds": metrics["train_runtime_s"], "tokens": recorder.tokens, "steps": metrics["global_step"],
               "curves": reward_curves(recorder.logs), "started": started, "finished": time.time()}
    return summary, recorder.logs


def control_budget(mode: str, grpo_units: Sequence[Mapping]) -> dict:
    """The SFT control's budget for one seed: the mean training seconds or tokens of that seed's GRPO runs."""
    if mode == "wall_clock":
        return {"seconds": float(np.mean([u["seconds"] for u in grpo_units]))}
    return {"tokens": int(np.mean([u["tokens"] for u in grpo_units]))}


def train_control_unit(cfg: Config, seed: int, budget: dict, augmented, sft_model: Path, weights: Path,
                       work_dir: Path) -> tuple[dict, list[dict]]:
    """Continue the warm-up with its own SFT recipe (sft.* values) into `weights` until `budget` is spent. Returns
    the training summary (with the budget) and every log.

    The learning rate climbs to sft.learning_rate over CONTROL_WARMUP_STEPS, then holds (GRPO's schedule too): a
    decaying schedule would need the number of steps in advance, which a wall-clock budget does not give. The
    warm-up is not optional: a fresh Adam moves every weight by about the learning rate at its first steps, and
    restarting at the peak rate without it took the tiny model to 0% accuracy in two steps.
    """
    from rarl_core.sft import train_sft

    sft = dataclasses.replace(cfg.sft, seed=seed, max_steps=CONTROL_MAX_STEPS, lr_scheduler="constant_with_warmup",
                              warmup_ratio=CONTROL_WARMUP_STEPS / CONTROL_MAX_STEPS, logging_steps=1,
                              save_steps=NO_CHECKPOINTS)
    model = dataclasses.replace(cfg.model, name_or_path=str(sft_model))
    recorder, started = RunRecorder(), time.time()
    metrics = train_sft(dataclasses.replace(cfg, sft=sft, model=model), augmented, weights, work_dir, [],
                        callbacks=[Budget(**budget), recorder])
    summary = {"seconds": metrics["train_runtime_s"], "tokens": recorder.tokens, "steps": metrics["global_step"],
               "budget": budget, "started": started, "finished": time.time()}
    return summary, recorder.logs


def reward_curves(logs: Sequence[Mapping]) -> dict[str, list[tuple[int, float]]]:
    """Per-step curves of a GRPO run: the weighted total `reward` and each `rewards/<name>/mean`."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for log in logs:
        for key, value in log.items():
            if (key == "reward" or (key.startswith("rewards/") and key.endswith("/mean"))) and value is not None:
                curves.setdefault(key, []).append((int(log["step"]), float(value)))
    return curves
