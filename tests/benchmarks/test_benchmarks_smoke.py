"""The benchmark suite runs, at tiny sizes, so it cannot rot. Benchmarks are not tests: nothing here asserts a
timing; what is checked is that each script runs, writes its JSON with the keys the summary reads, and that the
figures are positive numbers.

The orchestration benchmark runs three whole pipelines, too slow for a smoke test: its pieces are checked instead
(the stage plan read from DVC, the in-process runner on the first stages, `rarl serve` started and stopped).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, venv_env

BENCH = REPO / "benchmarks"


def load(name: str):
    """benchmarks/<name>.py as a module (benchmarks/ is a folder of scripts, not a package)."""
    if str(BENCH) not in sys.path:  # as when run as a script: its folder first, for `from _common import ...`
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def positive(spread: dict) -> bool:
    return all(isinstance(spread[k], (int, float)) and spread[k] > 0 for k in ("min", "median", "max"))


@pytest.mark.slow
def test_suite_runs_my_benchmarks_and_writes_the_summary(tmp_path):
    """run.py --quick on cold_start, memory (tiny params) and gpu_profile (--tiny, on CPU): one JSON, one Markdown."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--only", "cold_start,memory,gpu_profile",
         "--results", str(tmp_path)],
        cwd=REPO, env=venv_env(), capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [summary] = tmp_path.glob("*-quick-only-cold_start-gpu_profile-memory.json")
    suite = json.loads(summary.read_text())
    assert summary.with_suffix(".md").is_file()
    records = suite["benchmarks"]
    for name in ("cold_start", "memory", "gpu_profile"):
        assert records[name]["status"] == "ok", (name, records[name].get("why"), records[name].get("output_tail"))
        assert records[name]["rows"], name

    cold = records["cold_start"]["result"]
    assert set(cold["seconds"]) == {"python -c pass", "rarl --help", "import rarl_core", "import rarl_core.config"}
    assert all(positive(s) for s in cold["seconds"].values())

    memory = records["memory"]["result"]
    assert {"sft", "grpo@rl", "import floor"} <= set(memory["peak_rss_mb"])
    assert all(positive(s) for s in memory["peak_rss_mb"].values())

    gpu = records["gpu_profile"]["result"]
    stages = gpu["stages"]
    for stage in ("sft", "grpo"):
        assert positive(stages[stage]["step_s"]) and min(stages[stage]["step_peak_gb"]) > 0
        assert stages[stage]["trainable_parameters"] > 0 and min(stages[stage]["tokens_per_step"]) > 0
    assert stages["merge"]["seconds"] > 0 and stages["merge"]["peak_gb"] > 0
    assert stages["evaluate"]["seconds_per_question"] > 0 and stages["evaluate"]["questions"] > 0
    decode = {k: v for k, v in gpu["decode"].items() if k.isdigit()}
    assert decode and gpu["bandwidth_gb_per_s"] > 0
    for g in decode.values():
        assert positive(g["decode_tokens_per_s"]) and g["bound_tokens_per_s"] > 0 and g["ratio_to_bound_median"] > 0

    md = summary.with_suffix(".md").read_text()
    assert "| benchmark | figure | min | median | max |" in md and "peak RSS" in md


def test_gpu_profile_runs_the_40gb_profile_on_the_full_depth_real_shape_model(tmp_path):
    """On a GPU the stages run the profile's values on Qwen2-VL-2B-Instruct's full depth (the tiny_model stage's
    qwen2vl-2b preset at 28/32 layers) with real-size images; only step and question counts are cut."""
    import yaml

    from rarl_core.config import load_config

    gpu_profile = load("gpu_profile")
    profile = yaml.safe_load(gpu_profile.PROFILE.read_text())
    params = load("_stage_runs").workspace_params(tmp_path, [gpu_profile.PROFILE],
                                                  gpu_profile.overrides(profile, tiny=False, steps=3, questions=32))
    cfg = load_config(params)
    assert (cfg.tiny_model.preset, cfg.tiny_model.num_layers, cfg.tiny_model.vision_depth) == ("qwen2vl-2b", 28, 32)
    assert cfg.model.name_or_path == cfg.paths.tiny_model and cfg.model.dtype == "bfloat16"
    assert cfg.model.min_pixels == cfg.model.max_pixels == profile["model"]["max_pixels"]
    for section in ("sft", "grpo"):
        kept = {k: v for k, v in profile[section].items() if k not in ("max_steps", "save_steps", "lora")}
        assert {k: getattr(getattr(cfg, section), k) for k in kept} == kept, section
    assert (cfg.sft.max_steps, cfg.grpo.max_steps, cfg.evaluate.max_questions) == (3, 3, 32)
    assert cfg.evaluate.batch_size == profile["evaluate"]["batch_size"]


def test_gpu_profile_without_gpu_or_tiny_says_so():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the script would profile it")
    proc = subprocess.run([sys.executable, str(BENCH / "gpu_profile.py")], cwd=REPO, env=venv_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--tiny" in proc.stderr


def test_suite_reports_missing_failed_and_changed_benchmarks(tmp_path, monkeypatch):
    """A benchmark that is missing, fails, lacks --out, or changed its JSON is reported, never fatal."""
    run = load("run")
    monkeypatch.setattr(run, "HERE", tmp_path)
    monkeypatch.setattr(run, "REPO", tmp_path)
    (tmp_path / "broken.py").write_text("import sys\nprint('boom')\nsys.exit(3)\n")
    (tmp_path / "no_out.py").write_text(
        "import argparse, json\np = argparse.ArgumentParser()\np.add_argument('--repeats', type=int)\n"
        "a = p.parse_args()\nprint('starting')\nprint(json.dumps({'seconds': {'x': {'min': 1, 'median': 2, "
        "'max': 3}}, 'repeats': a.repeats}, indent=2))\nprint('written to somewhere')\n")

    assert run.run_benchmark("absent", [], 1, True, False)["status"] == "missing"
    failed = run.run_benchmark("broken", [], 1, True, False)
    assert failed["status"] == "failed" and "exit code 3" in failed["why"] and "boom" in failed["output_tail"]
    ok = run.run_benchmark("no_out", ["--rows", "4", "--tiny"], 2, True, False)
    assert ok["status"] == "ok" and ok["result"]["repeats"] == 2
    assert any("no --out" in n for n in ok["notes"]) and any("--rows 4 not applied" in n for n in ok["notes"])
    assert any("no --tiny" in n for n in ok["notes"])
    assert run.option_groups(["--steps", "2", "--tiny", "--size", "tiny"]) == [["--steps", "2"], ["--tiny"],
                                                                             ["--size", "tiny"]]
    assert run.summarise(run.summarise_cold_start, ok)[0]["median"] == 2
    assert run.summarise(run.summarise_memory, ok) == [] and ok["status"] == "ok, summary failed"
    assert run.run_benchmark("gpu_profile", [], 1, False, gpu=False)["status"] in ("skipped", "missing")


def test_orchestration_plan_is_every_dvc_stage_as_a_stage_main(tmp_path):
    """The in-process floor runs exactly dvc.yaml's commands, in the flow's order, each as module.main(args)."""
    import importlib

    import yaml

    orchestration = load("orchestration")
    project = orchestration.make_project(tmp_path / "p", "tiny")
    plan = orchestration.stage_plan(project)
    names = [name for name, _, _ in plan]
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    assert {n.split("@")[0] for n in names} == set(stages)
    assert names.index("prepare") < names.index("sft") < names.index("grpo@rl") < names.index("report")
    for _, module, _ in plan:
        assert callable(importlib.import_module(module).main)
    assert ["sft", "tasks.sft", []] in plan and ["grpo@rl", "tasks.grpo", ["--variant", "rl"]] in plan


def test_orchestration_in_process_runner_runs_stages(tmp_path):
    """The floor's child process on the first stages of a tiny project: outputs appear, seconds come back."""
    orchestration = load("orchestration")
    project = orchestration.make_project(tmp_path / "p", "tiny")
    plan = [["prepare", "tasks.prepare", []], ["augment", "tasks.augment", []]]
    cmd = [sys.executable, str(BENCH / "orchestration.py"), "--in-process", str(project), "--plan", json.dumps(plan)]
    seconds, output = orchestration.run_logged(cmd, project, orchestration.env(), tmp_path / "log", 600)
    stage_seconds = json.loads(output.rsplit("STAGE_SECONDS ", 1)[1].splitlines()[0])
    assert set(stage_seconds) == {"prepare", "augment"} and all(s > 0 for s in stage_seconds.values())
    assert (project / "data" / "augmented" / "train.parquet").is_file() and seconds > 0


@pytest.mark.slow
def test_orchestration_prefect_server_starts_and_stops(tmp_path):
    """`rarl serve` with its own PREFECT_HOME: ready with the rarl/train deployment, and gone after stop."""
    import urllib.request

    orchestration = load("orchestration")
    host = orchestration.make_project(tmp_path / "host", "tiny")
    proc, environ, seconds = orchestration.start_prefect(host, tmp_path / "home", tmp_path / "serve.log")
    try:
        assert seconds > 0 and str(tmp_path / "home") == environ["PREFECT_HOME"]
        url = f"{environ['PREFECT_API_URL']}/deployments/name/rarl/train"
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert json.loads(resp.read())["name"] == "train"
    finally:
        orchestration.stop_prefect(proc)
    assert proc.poll() is not None


@pytest.mark.slow
def test_memory_model_runs_fits_and_reports_at_tiny_size(tmp_path):
    """memory_model.py on the embedded tiny model: a training stage and evaluation, each size in its own process,
    each fit with its coefficients and its error on every size, and the suite's summary reads it (grpo runs the
    same fit on train_grpo's steps, which the suite's gpu_profile --tiny runs)."""
    proc = subprocess.run([sys.executable, str(BENCH / "memory_model.py"), "--size", "tiny", "--only",
                           "sft,evaluate", "--out", str(tmp_path)], cwd=REPO, env=venv_env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    [written] = tmp_path.glob("memory_model-tiny-*.json")
    result = json.loads(written.read_text())
    assert result["logits_per_token_bytes_cpu"] > 0 and result["token_lengths"]["row_tokens"]["max"] > 0
    for stage in ("sft", "evaluate"):
        fit = result["fit"][stage]
        assert fit["per_token_bytes"] > 0 and len(fit["sizes"]) == 2, stage
        tokens = [size["tokens"] for size in fit["sizes"]]
        assert tokens[0] < tokens[1], stage  # the sizes differ in what the model is fitted on
        assert all(size["peak_gb"] > 0 and "error_pct" in size for size in fit["sizes"]), stage
    assert all(size["seconds_per_step"] > 0 for size in result["fit"]["sft"]["sizes"])
    assert load("run").summarise_memory_model(result)


def test_memory_model_predicts_each_profile_from_its_own_values():
    """The prediction reads each GPU profile's batch sizes and lengths: tokens per micro-batch = rows x (image tokens
    at max_pixels + text), and the peak is the fitted fixed part less the process floor (host memory on a GPU) plus
    the fitted per-token part."""
    import yaml

    memory_model = load("memory_model")
    fitted = {stage: {"intercept_gb": 6.0, "per_token_bytes": 600_000} for stage in ("sft", "grpo")}
    fitted["evaluate"] = {"held_gb": 5.0, "floor_gb": 0.5, "per_token_bytes": 30_000}
    lengths = {"image_tokens_448px": 256, "prompt_tokens": {"max": 330}, "row_tokens": {"max": 356},
               "eval_prompt_tokens": [320, 330]}
    for name, card in memory_model.PROFILES.items():
        profile = yaml.safe_load((REPO / "profiles" / f"{name}.yaml").read_text())
        out = memory_model.predict_profile(name, card, fitted, lengths)
        assert out["image_tokens"] == profile["model"]["max_pixels"] // 784
        assert out["sft"]["tokens_per_micro_batch"] == profile["sft"]["batch_size"] * (out["image_tokens"] + 100)
        grpo = profile["grpo"]
        grpo_tokens = grpo["batch_size"] * (out["image_tokens"] + 74 + grpo["max_completion_length"])
        assert out["grpo"]["tokens_per_micro_batch"] == grpo_tokens
        expected = 6.0 - 0.5 + 600_000 * grpo_tokens / 1e9
        assert abs(out["grpo"]["allocated_gb"] - expected) < 0.01, (name, out["grpo"])
        assert abs(out["grpo"]["card_needs_gb"] - (expected * 1.15 + 0.5)) < 0.02  # allocator slack, CUDA context
        evaluate = profile["evaluate"]
        evaluate_tokens = evaluate["batch_size"] * (out["image_tokens"] + 74 + evaluate["max_new_tokens"])
        assert abs(out["evaluate"]["allocated_gb"] - (5.0 - 0.5 + 30_000 * evaluate_tokens / 1e9)) < 0.01
        assert out["margin_gb"] == round(card - out["worst_card_needs_gb"], 2)
