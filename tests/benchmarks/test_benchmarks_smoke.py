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
    assert gpu["parameters"]["total"] > gpu["parameters"]["language_model_with_lm_head"] > 0
    assert positive(gpu["sft_lora"]["micro_batch_s"]) and gpu["sft_lora"]["peak_memory_gb"] > 0
    for key in ("generations_2", "generations_4"):
        step = gpu["grpo_lora"][key]
        assert positive(step["generate_s"]) and positive(step["policy_forward_backward_s"])
    for g in gpu["generation"].values():
        assert positive(g["decode_tokens_per_s"]) and g["bound_tokens_per_s"] > 0 and g["ratio_to_bound_median"] > 0
    assert gpu["merge_s"] > 0 and gpu["bandwidth_gb_per_s"] > 0

    md = summary.with_suffix(".md").read_text()
    assert "| benchmark | figure | min | median | max |" in md and "peak RSS" in md


def test_gpu_profile_real_config_is_qwen2_vl_2b():
    """The 2B architecture written from the published config has its published size: 2.21 B parameters (built on
    the meta device: no memory, no time)."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    config = load("gpu_profile").qwen2vl_2b_config()
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(config)
    total = sum(p.numel() for p in model.parameters())  # shared (tied) parameters counted once
    assert abs(total - 2_208_985_600) < 1_000_000, total
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight  # tie_word_embeddings


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
