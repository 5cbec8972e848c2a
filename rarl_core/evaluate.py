"""Evaluation: each model answers each evaluation set under each inference prompt; answers are scored by type.

Generation is batched with left padding (one model load per model, a progress bar per cell), greedy by default or
sampled (temperature, top_p, n samples per question) when params.yaml asks for it. Every prediction is kept (full
completion, parsed answer, score, timing) so that a judge or a person can re-check it. A model is a save_pretrained
folder or a PEFT adapter folder, which is loaded on the base its adapter_config.json names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from rarl_core.answers import final_answer, parse_completion, score_answer
from rarl_core.config import Config, ConfigError, EvaluateConfig, ModelConfig
from rarl_core.metrics import (
    bootstrap_ci,
    by_modality,
    majority_baseline,
    paired_bootstrap,
    question_means,
    summarize,
)
from rarl_core.modeling import default_device, load_model, load_processor
from rarl_core.prompts import inference_prompt, user_message

Scores = dict[str, dict[str, dict[str, list[float]]]]  # model -> dataset -> prompt -> per-question accuracy


def model_paths(cfg: Config) -> dict[str, str]:
    """The models compared, in report order: base, the SFT warm-up, each GRPO variant merged, then extra models."""
    merged = {name: str(Path(cfg.paths.merged) / name) for name in cfg.grpo.variants}
    if clash := set(cfg.evaluate.extra_models) & set(merged):
        raise ConfigError(f"evaluate.extra_models reuses the GRPO variant name(s) {sorted(clash)}: rename them")
    return {"base": cfg.model.name_or_path, "sft": cfg.paths.sft_model, **merged, **cfg.evaluate.extra_models}


def eval_sets(cfg: Config) -> dict[str, pd.DataFrame]:
    """The test split of every in-domain and unseen set, at most evaluate.max_questions each (0: all)."""
    from rarl_core.schema import load_split

    sets = {}
    for name in [*cfg.data.in_domain, *cfg.data.unseen]:
        frame = load_split(cfg.paths.prepared, name, "test")
        sets[name] = stratified_sample(frame, cfg.evaluate.max_questions, cfg.evaluate.seed)
    return sets


def stratified_sample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """At most `n` rows (0: all), drawn with `seed` so that each answer type keeps its share (largest remainders),
    in the set's own order. Why not the first n: a set's first rows are often one question type (the starter's
    first 8 are, with a majority baseline of 87.5%)."""
    if not n or n >= len(frame):
        return frame
    counts = frame["answer_type"].value_counts().sort_index()
    quota = counts * n / len(frame)
    take = quota.astype(int)
    for kind in (quota - take).sort_values(ascending=False, kind="stable").index[: n - int(take.sum())]:
        take[kind] += 1
    rng = np.random.default_rng(seed)
    keep = [i for kind, k in take.items() for i in rng.choice(np.flatnonzero(frame["answer_type"] == kind), k,
                                                              replace=False)]
    return frame.iloc[sorted(keep)].reset_index(drop=True)


def load_for_eval(path: str | Path, model_cfg: ModelConfig, device: str | None = None):
    """(model, processor) of a model folder, or of a PEFT adapter folder on the base that its config names.

    An adapter is merged into its base after loading: the outputs are the same and generation runs at the speed
    of a plain model. The processor comes from the base, since an adapter folder need not carry one.
    """
    path = Path(path)
    adapter_config = path / "adapter_config.json"
    if not adapter_config.is_file():
        processor = load_processor(path, model_cfg.min_pixels, model_cfg.max_pixels)
        return load_model(path, model_cfg.dtype, device or default_device()).eval(), processor
    from peft import PeftModel

    base = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
    if not base:
        raise FileNotFoundError(f"{adapter_config} names no base_model_name_or_path: cannot load the adapter")
    model = PeftModel.from_pretrained(load_model(base, model_cfg.dtype), str(path)).merge_and_unload()
    processor = load_processor(base, model_cfg.min_pixels, model_cfg.max_pixels)
    return model.to(device or default_device()).eval(), processor


def generation_kwargs(cfg: EvaluateConfig) -> dict:
    """`model.generate` settings: greedy when temperature is 0, else sampling with num_samples per question.

    top_k is set (0: off) because generate fills every unset value from the checkpoint's generation_config.json,
    and Qwen2-VL-2B-Instruct's says top_k 1: sampling would silently be greedy, n identical samples per question.
    """
    if cfg.temperature == 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": 0,
            "num_return_sequences": cfg.num_samples}


@torch.no_grad()
def generate(model, processor, prompts: list[str], image_paths: list, max_new_tokens: int, batch_size: int,
             desc: str = "generate", sampling: dict | None = None) -> list[dict]:
    """Completions for (prompt, image) pairs in order, `num_return_sequences` per pair (question-major), each with
    its token count and seconds per completion. Greedy unless `sampling` (see `generation_kwargs`) says otherwise."""
    sampling = sampling or {"do_sample": False}
    device = next(model.parameters()).device
    eos, pad = processor.tokenizer.eos_token_id, processor.tokenizer.pad_token_id
    out: list[dict] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, unit="batch"):
        texts = [processor.apply_chat_template(user_message(p), add_generation_prompt=True, tokenize=False)
                 for p in prompts[start : start + batch_size]]
        images = [Image.open(image).convert("RGB") if isinstance(image, (str, Path)) else image
                  for image in image_paths[start : start + batch_size]]
        inputs = processor(text=texts, images=images, return_tensors="pt", padding=True).to(device)
        began = time.perf_counter()
        generated = model.generate(**inputs, max_new_tokens=max_new_tokens, pad_token_id=pad, **sampling)
        new_tokens = generated[:, inputs["input_ids"].shape[1] :]
        seconds = (time.perf_counter() - began) / len(new_tokens)
        for row in new_tokens:
            n_tokens = int(((row != pad) & (row != eos)).sum())
            text = processor.tokenizer.decode(row, skip_special_tokens=True)
            out.append({"completion": text, "completion_tokens": n_tokens, "seconds": seconds})
    return out


def score_rows(frame: pd.DataFrame, generations: list[dict]) -> list[dict]:
    """One prediction record per completion: the completion, the parsed answer and its scores.

    With n samples per question there are n generations per row (question-major); `id` stays unique per record
    (`<question>#<k>`) so a judge can key on it, and `question_id` groups the samples of one question.
    """
    per_question = len(generations) // max(1, len(frame))
    if per_question * len(frame) != len(generations):
        raise ValueError(f"{len(generations)} generations for {len(frame)} questions: expected a multiple")
    records = []
    for i, gen in enumerate(generations):
        row = frame.iloc[i // per_question]
        sample = i % per_question
        answer = final_answer(gen["completion"])
        score = score_answer(answer, row["answer"], row["answer_type"], row["choices"])
        records.append(
            {
                "id": row["id"] if per_question == 1 else f"{row['id']}#{sample}", "question_id": row["id"],
                "sample": sample, "dataset": row["dataset"], "question": row["question"], "answer": row["answer"],
                "answer_type": row["answer_type"], "choices": list(row["choices"]), "modality": row["modality"],
                "completion": gen["completion"], "parsed_answer": answer, "correct": score.correct,
                "f1": score.f1, "recall": score.recall, "well_formed": parse_completion(gen["completion"]).well_formed,
                "completion_tokens": gen["completion_tokens"], "seconds": gen["seconds"],
            }
        )
    return records


def cell_metrics(records: list[dict], n_resamples: int) -> dict:
    """Metrics of one model x dataset x prompt cell: by answer type, a bootstrap 95% interval on accuracy
    (resampling questions), seconds per completion, accuracy per imaging modality, and the published metrics
    (LLaVA-Med's, MultiMedEval's and MedEvalKit's definitions: rarl_core/published_metrics.py)."""
    from rarl_core.published_metrics import published_metrics

    metrics = summarize(records)
    low, high = bootstrap_ci(question_means(records), n_resamples)
    seconds = sum(r["seconds"] for r in records) / len(records)
    return metrics | {"accuracy_ci_low": low, "accuracy_ci_high": high, "seconds_per_completion": seconds,
                      "accuracy_by_modality": by_modality(records), "published": published_metrics(records)}


def evaluate_model(cfg: Config, name: str, path: str, sets: dict[str, pd.DataFrame], templates: dict,
                   save: Callable[[str, str, list[dict], str | None], None]) -> dict[str, dict[str, dict]]:
    """Evaluate one model (loaded once) on every set x prompt, with the real images and with each image control of
    evaluate.image_controls; `save(dataset, prompt, records, control)` keeps predictions (control None: real).

    A cell's metrics are those of the real images, plus `controls` (each control's accuracy and format rate) and
    `image_reliance` (real minus control on the same questions, paired 95% CI)."""
    from rarl_core.controls import control_images, image_reliance

    model, processor = load_for_eval(path, cfg.model)
    sampling = generation_kwargs(cfg.evaluate)
    e = cfg.evaluate
    results: dict[str, dict[str, dict]] = {}
    for dataset, frame in sets.items():
        images = {None: list(frame["image_path"])} | {c: control_images(frame, c, e.seed) for c in e.image_controls}
        for prompt_name in e.prompts:
            prompts = [inference_prompt(prompt_name, q, c, templates) for q, c in zip(frame["question"], frame["choices"])]
            scored = {}
            for control, shown in images.items():
                torch.manual_seed(e.seed)  # each cell reproducible on its own when sampling
                desc = f"{name}/{dataset}/{prompt_name}" + (f" ({control} image)" if control else "")
                generations = generate(model, processor, prompts, shown, e.max_new_tokens, e.batch_size, desc=desc,
                                       sampling=sampling)
                records = score_rows(frame, generations)
                save(dataset, prompt_name, records, control)
                scored[control] = records
            cell = cell_metrics(scored[None], e.n_resamples)
            real = question_means(scored[None])
            cell["controls"] = {c: {k: summarize(scored[c]).get(k) for k in ("accuracy", "format_rate")}
                                for c in e.image_controls}
            cell["image_reliance"] = {c: image_reliance(real, question_means(scored[c]), e.n_resamples)
                                      for c in e.image_controls}
            results.setdefault(dataset, {})[prompt_name] = cell
    return results


def baselines(sets: dict[str, pd.DataFrame], train: pd.DataFrame) -> dict[str, dict[str, float]]:
    """What a model that ignores the image scores, per evaluation set: the majority answer per answer type, and the
    blind prior (the commonest training answer to the same question text, rarl_core/controls.py)."""
    from rarl_core.controls import blind_prior

    return {name: {"majority": majority_baseline(list(f["answer"]), list(f["answer_type"]), list(f["choices"])),
                   "blind_prior": float(np.mean(blind_prior(train, f)))} for name, f in sets.items()}


def training_rows(cfg: Config) -> pd.DataFrame:
    """The train split of every training set (the blind prior's memory)."""
    from rarl_core.schema import load_split

    return pd.concat([load_split(cfg.paths.prepared, name, "train") for name in cfg.data.train], ignore_index=True)


def paired_comparisons(scores: Scores, models: list[str], n_resamples: int) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Accuracy difference with a paired bootstrap 95% interval, for every pair of `models` on the same questions.

    Keys are `<later>-vs-<earlier>` in the given order (e.g. rarl-vs-rl, rl-vs-sft), so a positive `diff` means
    the later model answered more questions right; an interval containing 0 is no evidence of a difference.
    """
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for earlier, later in combinations(models, 2):
        for dataset, per_prompt in scores[later].items():
            for prompt, values in per_prompt.items():
                paired = paired_bootstrap(values, scores[earlier][dataset][prompt], n_resamples)
                cell = {key: paired[key] for key in ("diff", "ci_low", "ci_high")}
                out.setdefault(f"{later}-vs-{earlier}", {}).setdefault(dataset, {})[prompt] = cell
    return out
