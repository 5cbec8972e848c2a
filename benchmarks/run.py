"""Every benchmark, one command: each script runs in its own subprocess on the embedded default, and the results land
in one JSON and one Markdown summary, benchmarks/results/<date>-<machine>.{json,md}.

Why one command: the figures only mean something side by side and on the same machine state. Each comparison is a
ratio measured inside one script run (ours vs bare TRL, batched vs one at a time, concurrent vs sequential, 2 vs 1
workers, each path vs the in-process floor), so it survives a busy machine far better than absolute seconds; the
summary prints every absolute figure as min / median / max over the repeats, each ratio beside its goal, and the load
average before and after. A benchmark that is missing, fails or changed its output is reported as such with the
reason, never allowed to stop the others.

Conventions a benchmark script follows: `--repeats N`, `--out DIR` (one JSON written there, and printed). A script
that lacks `--out` still runs: its JSON is read from its standard output (its own copy stays where it writes it).
Flags are passed only when the script declares them (read from its source), so a script that changes its options
degrades to its defaults rather than failing.

    python benchmarks/run.py            # the full suite (about 25 minutes on 2 cores, plus memory_model: about an hour)
    python benchmarks/run.py --quick    # one repeat, tiny sizes: checks that everything still runs (a few minutes)
    python benchmarks/run.py --only cold_start,memory [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

TIMEOUT_S = {"full": 3600, "quick": 1200, "orchestration": 5400, "memory_model": 3 * 3600}  # by name, else by mode


# ----------------------------------------------------------------------------------------------------------------
# Running one benchmark
# ----------------------------------------------------------------------------------------------------------------


def declared_flags(script: Path) -> set[str]:
    """The options a script's argparse declares, read from its source (no import: some take seconds to import)."""
    return set(re.findall(r"""add_argument\(\s*["'](--[\w-]+)["']""", script.read_text()))


def option_groups(args: list[str]) -> list[list[str]]:
    """["--steps", "2", "--tiny"] -> [["--steps", "2"], ["--tiny"]]: each option with its values."""
    groups: list[list[str]] = []
    for arg in args:
        if arg.startswith("--") or not groups:
            groups.append([arg])
        else:
            groups[-1].append(arg)
    return groups


def has_gpu() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True)
    return probe.stdout.strip() == "True"


def json_from_stdout(stdout: str) -> dict:
    """The first JSON object printed at the start of a line (scripts print their result, then maybe a path)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"^\{", stdout, flags=re.MULTILINE):
        try:
            value, _ = decoder.raw_decode(stdout[match.start():])
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("no JSON object in its output")


def run_benchmark(name: str, extra: list[str], repeats: int, quick: bool, gpu: bool) -> dict:
    """Run benchmarks/<name>.py in a subprocess; return {status, why, command, seconds, result}."""
    script = HERE / f"{name}.py"
    if not script.is_file():
        return {"status": "missing", "why": f"{script.relative_to(REPO)} does not exist"}
    if name == "gpu_profile" and not gpu and "--tiny" not in extra:
        return {"status": "skipped", "why": "no CUDA GPU on this machine (gpu_profile.py --tiny checks it on CPU)"}
    flags = declared_flags(script)
    notes = []
    args = []
    if "--repeats" in flags:
        args += ["--repeats", str(repeats)]
    else:
        notes.append("the script has no --repeats: its default repeat count was used")
    for group in option_groups(extra):
        if group[0] in flags:
            args += group
        else:
            notes.append(f"the script has no {group[0]}: {' '.join(group)} not applied")
    with tempfile.TemporaryDirectory(prefix=f"rarl-bench-{name}-") as out:
        if "--out" in flags:
            args += ["--out", out]
        else:
            notes.append("the script has no --out: result read from its output (it also wrote its own file)")
        command = [sys.executable, str(script.relative_to(REPO)), *args]
        timeout = TIMEOUT_S["quick"] if quick and name != "orchestration" else TIMEOUT_S.get(name, TIMEOUT_S["full"])
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore::FutureWarning"}
        start = time.perf_counter()
        record = {"command": command, "notes": notes}
        try:
            proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return record | {"status": "failed", "why": f"timed out after {timeout} s"}
        record["seconds"] = round(time.perf_counter() - start, 1)
        if proc.returncode:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            return record | {"status": "failed", "why": f"exit code {proc.returncode}", "output_tail": tail}
        written = sorted(Path(out).glob("*.json"), key=lambda p: p.stat().st_mtime)
        try:
            result = json.loads(written[-1].read_text()) if written else json_from_stdout(proc.stdout)
        except ValueError as err:
            return record | {"status": "failed", "why": f"could not read its result: {err}"}
    return record | {"status": "ok", "result": result}


# ----------------------------------------------------------------------------------------------------------------
# Summaries: one function per benchmark, turning its JSON into table rows
# ----------------------------------------------------------------------------------------------------------------


def row(figure: str, spread: dict | None = None, ratio: str = "", goal: str = "", met: bool | None = None) -> dict:
    """One line of the summary: a figure's min/median/max, and/or a same-run ratio with its goal."""
    spread = spread or {}
    return {"figure": figure, "min": spread.get("min"), "median": spread.get("median"), "max": spread.get("max"),
            "ratio": ratio, "goal": goal, "met": met}


def summarise_grpo_overhead(r: dict) -> list[dict]:
    ratio, cpu_ratio = r["ratio_median"], r["cpu_ratio_median"]
    same = "same config and completions" if not r["config_differences"] and r["same_completions"] else \
        f"**not the same work**: {len(r['config_differences'])} config differences, same completions: " \
        f"{r['same_completions']}"
    return [row("GRPO step, our stage (s/step)", r["ours_s_per_step"]),
            row("GRPO step, bare TRL script (s/step)", r["bare_trl_s_per_step"]),
            row("GRPO step, completion tokens generated per step (ours)", r["ours_completion_tokens_per_step"]),
            row("GRPO step, completion tokens generated per step (bare TRL)", r["bare_trl_completion_tokens_per_step"]),
            row(f"GRPO step: ours / bare TRL, wall ({same})", ratio=f"{ratio:.3f} {pairs(r['ratio_per_pair'])}",
                goal="<= 1.05", met=ratio <= 1.05),
            row("GRPO step: ours / bare TRL, CPU seconds", ratio=f"{cpu_ratio:.3f} {pairs(r['cpu_ratio_per_pair'])}",
                goal="<= 1.05", met=cpu_ratio <= 1.05)]


def pairs(ratios: list[float]) -> str:
    """The spread of a median ratio over its interleaved pairs: what one run's noise is."""
    return f"(pairs {min(ratios):.2f}-{max(ratios):.2f})"


def summarise_eval_generation(r: dict) -> list[dict]:
    batched = next(k for k in r if k.startswith("batch_"))
    n = batched.removeprefix("batch_")
    speedup = r["speedup_median"]
    same = r.get("identical_greedy_outputs")
    return [row("evaluation, one at a time (questions/s)", r["one_at_a_time"]["questions_per_s"]),
            row(f"evaluation, batch {n} (questions/s)", r[batched]["questions_per_s"]),
            row(f"evaluation: batch {n} / one at a time" + ("" if same is None else f" (identical outputs: {same})"),
                ratio=f"{speedup:.2f}x", goal=">= 4x at batch 8 on CPU", met=speedup >= 4)]


def summarise_judge_throughput(r: dict) -> list[dict]:
    concurrent = next(k for k in r if k.startswith("concurrent_"))
    n = concurrent.removeprefix("concurrent_")
    speedup = r["speedup_median"]
    calls = r["cached_rerun"]["calls"]
    latency = r.get("latency_per_call_s")
    return [row(f"judge, sequential (rows/s, {latency} s latency)", r["sequential"]["rows_per_s"]),
            row(f"judge, concurrency {n} (rows/s)", r[concurrent]["rows_per_s"]),
            row(f"judge: concurrency {n} / sequential", ratio=f"{speedup:.2f}x", goal=">= 8x at concurrency 16",
                met=speedup >= 8),
            row("judge: cached re-run, calls made", ratio=str(calls), goal="0", met=calls == 0)]


def summarise_prepare_throughput(r: dict) -> list[dict]:
    rows = []
    for scenario, s in r["scenarios"].items():
        unit = next(k for k in s["workers_1"] if k.endswith("_per_s"))
        rows += [row(f"prepare {scenario}, 1 worker ({unit.replace('_per_s', '')}/s)", s["workers_1"][unit]),
                 row(f"prepare {scenario}, 2 workers ({unit.replace('_per_s', '')}/s)", s["workers_2"][unit]),
                 row(f"prepare {scenario}: 2 / 1 workers"
                     + (f" (identical output: {s['identical_output']})" if "identical_output" in s else ""),
                     ratio=f"{s['speedup_2_vs_1_median']:.2f}x",
                     goal="control shows what the machine allows" if scenario == "control" else "")]
    return rows


def summarise_orchestration(r: dict) -> list[dict]:
    labels = {"inprocess": "stage functions in one process", "dvc": "dvc repro",
              "prefect": "prefect deployment run rarl/train"}
    rows = [row(f"pipeline ({r['size']} params), {labels.get(p, p)} (s)", s) for p, s in r["seconds"].items()]
    for path, o in r.get("overhead_vs_inprocess", {}).items():
        rows.append(row(f"orchestration overhead, {labels.get(path, path)} vs one process",
                        ratio=f"+{o['seconds']:.1f} s = {100 * o['share_of_total']:.0f}% of its total "
                              f"({o['per_stage_s']:.1f} s/stage)"))
    if "prefect_flow_run_s" in r:
        rows.append(row("prefect flow run as the server records it (s)", r["prefect_flow_run_s"]))
    if "prefect_startup_s" in r:
        rows.append(row("rarl serve until ready, once (s)", {"median": r["prefect_startup_s"]}))
    return rows


def summarise_cold_start(r: dict) -> list[dict]:
    return [row(f"cold start: {command} (s)", s) for command, s in r["seconds"].items()]


def summarise_memory(r: dict) -> list[dict]:
    return [row(f"peak RSS ({r['size']} params): {stage} (MB)", s) for stage, s in r["peak_rss_mb"].items()]


def summarise_memory_model(r: dict) -> list[dict]:
    rows = []
    for stage in [name for name in ("sft", "grpo") if name in r["fit"]]:
        f = r["fit"][stage]
        for size in f["sizes"]:
            label = ", ".join(f"{k} {v}" for k, v in size["size"].items())
            rows.append(row(f"{r['size']} depth {stage} ({label}): {size['tokens']} tokens, peak "
                            f"{size['peak_gb']:.2f} GB (model {size['predicted_gb']:.2f}) (s/step)",
                            {"median": size["seconds_per_step"]}))
        rows.append(row(f"{stage}: per token (KB), model error max (%)",
                        {"median": f["per_token_bytes"] / 1e3},
                        ratio=f"{max(abs(s['error_pct']) for s in f['sizes']):.1f}%"))
    for name, p in r.get("predictions", {}).items():
        if not p.get("missing"):
            rows.append(row(f"predicted peak {name} (GB, worst stage)", {"median": p["worst_card_needs_gb"]},
                            ratio=f"margin {p['margin_gb']} GB of {p['card_gb']}", goal="fits the card",
                            met=p["margin_gb"] > 0))
    return rows


def summarise_gpu_profile(r: dict) -> list[dict]:
    s = r["stages"]
    rows = [row(f"{r['device']}: sft step (s), peak {max(s['sft']['step_peak_gb'])} GB", s["sft"]["step_s"]),
            row(f"grpo step (s), peak {max(s['grpo']['step_peak_gb'])} GB", s["grpo"]["step_s"]),
            row(f"merge (s), peak {s['merge']['peak_gb']} GB", {"median": s["merge"]["seconds"]}),
            row(f"evaluate, batch {s['evaluate']['batch_size']} (s/question), peak {s['evaluate']['peak_gb']} GB",
                {"median": s["evaluate"]["seconds_per_question"]})]
    for batch, g in r["decode"].items():
        if batch.isdigit():
            rows.append(row(f"decode, batch {batch} (tokens/s)", g["decode_tokens_per_s"],
                            ratio=f"{g['ratio_to_bound_median']:.2f} of bound {g['bound_tokens_per_s']:.0f}",
                            goal="bandwidth bound"))
    return rows


# What runs, in order (cheap first, the pipelines last): name, arguments (full run, --quick run), repeats (full,
# quick), and the function that turns its JSON into summary rows.
BENCHMARKS = [
    ("cold_start", ([], []), (5, 1), summarise_cold_start),
    ("judge_throughput", ([], ["--rows", "32"]), (3, 1), summarise_judge_throughput),
    ("prepare_throughput", ([], []), (3, 1), summarise_prepare_throughput),
    ("eval_generation", ([], ["--questions", "8"]), (3, 1), summarise_eval_generation),
    ("grpo_overhead", ([], ["--steps", "2", "--sft-steps", "10"]), (3, 1), summarise_grpo_overhead),
    ("memory", (["--size", "shipped"], ["--size", "tiny"]), (2, 1), summarise_memory),
    ("orchestration", (["--size", "small"], ["--size", "tiny"]), (2, 1), summarise_orchestration),
    ("memory_model", ([], ["--size", "tiny", "--only", "sft,grpo,evaluate"]), (1, 1), summarise_memory_model),
    ("gpu_profile", ([], ["--tiny"]), (3, 1), summarise_gpu_profile),  # --quick: tiny model, CPU is enough
]


def summarise(summariser, record: dict) -> list[dict]:
    """Table rows for one benchmark; a result whose keys moved is reported, not fatal."""
    if record["status"] != "ok":
        return []
    try:
        return summariser(record["result"])
    except (KeyError, StopIteration, TypeError, ValueError) as err:
        record["status"] = "ok, summary failed"
        record["why"] = f"its JSON lacks what the summary reads ({type(err).__name__}: {err}); see the JSON"
        return []


# ----------------------------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------------------------


def fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def markdown(suite: dict) -> str:
    lines = [
        f"# Benchmarks {suite['date']} on {suite['machine']}" + (" (--quick)" if suite["quick"] else ""),
        "",
        f"{suite['cpus']} CPUs, GPU: {suite['gpu'] or 'none'}; load average (1/5/15 min) "
        f"{suite['load_average']['start']} at the start, {suite['load_average']['end']} at the end; "
        f"git {suite['git']}; Python {suite['python']}; {suite['wall_s'] / 60:.1f} minutes in all.",
        "",
        "Absolute figures move with the machine's load (min / median / max over the repeats); the ratios are measured "
        "within one script run, so both sides saw the same machine.",
        "",
        "| benchmark | figure | min | median | max | ratio (same run) | goal | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, record in suite["benchmarks"].items():
        for r in record.get("rows", []):
            met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
            lines.append(f"| {name} | {r['figure']} | {fmt(r['min'])} | {fmt(r['median'])} | {fmt(r['max'])} | "
                         f"{r['ratio']} | {r['goal']} | {met} |")
        if record["status"] != "ok":
            lines.append(f"| {name} | **{record['status']}**: {record.get('why', '')} | | | | | | |")
    notes = []  # what the runner adapted, and what each benchmark says about its own sizes
    for name, rec in suite["benchmarks"].items():
        own = rec.get("result", {}).get("note")
        notes += [(name, n) for n in rec.get("notes", []) + ([own] if isinstance(own, str) else [])]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {name}: {n}" for name, n in notes]
    return "\n".join(lines) + "\n"


def git_describe() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
        return commit + (" + uncommitted changes" if dirty.strip() else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat at tiny sizes: a check that all still runs")
    parser.add_argument("--only", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--repeats", type=int, help="override every benchmark's repeat count")
    parser.add_argument("--results", type=Path, default=HERE / "results", help="folder for the summary files")
    args = parser.parse_args(argv)
    names = [b[0] for b in BENCHMARKS]
    wanted = args.only.split(",") if args.only else names
    if unknown := [w for w in wanted if w not in names]:
        parser.error(f"unknown benchmarks {unknown}; known: {', '.join(names)}")

    gpu = has_gpu()
    gpu_name = ""
    if gpu:
        gpu_name = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.get_device_name())"],
                                  capture_output=True, text=True).stdout.strip()
    start = time.perf_counter()
    suite = {
        "date": date.today().isoformat(),
        "started": datetime.now().isoformat(timespec="seconds"),
        "machine": platform.node(),
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "gpu": gpu_name,
        "python": platform.python_version(),
        "git": git_describe(),
        "load_average": {"start": [round(x, 2) for x in os.getloadavg()]},
        "benchmarks": {},
    }
    selected = [b for b in BENCHMARKS if b[0] in wanted]
    for i, (name, (full_args, quick_args), (full_repeats, quick_repeats), summariser) in enumerate(selected, 1):
        print(f"[{i}/{len(selected)}] {name} ...", file=sys.stderr, flush=True)
        repeats = args.repeats or (quick_repeats if args.quick else full_repeats)
        record = run_benchmark(name, quick_args if args.quick else full_args, repeats, args.quick, gpu)
        record["rows"] = summarise(summariser, record)
        suite["benchmarks"][name] = record
        print(f"    {record['status']}" + (f": {record['why']}" if record.get("why") else "")
              + (f" ({record['seconds']} s)" if "seconds" in record else ""), file=sys.stderr, flush=True)
    suite["load_average"]["end"] = [round(x, 2) for x in os.getloadavg()]
    suite["wall_s"] = round(time.perf_counter() - start, 1)

    args.results.mkdir(parents=True, exist_ok=True)
    stem = f"{suite['date']}-{re.sub(r'[^A-Za-z0-9_.-]', '_', suite['machine'])}" + ("-quick" if args.quick else "")
    if args.only:  # a partial run never overwrites the whole suite's files
        stem += "-only-" + "-".join(sorted(wanted))
    base, n = stem, 1
    while (args.results / f"{stem}.json").exists():  # nor an earlier run of the same day
        n += 1
        stem = f"{base}-{n}"
    (args.results / f"{stem}.json").write_text(json.dumps(suite, indent=2) + "\n")
    summary = markdown(suite)
    (args.results / f"{stem}.md").write_text(summary)
    print(summary)
    print(f"written: {args.results / stem}.json, .md", file=sys.stderr)
    return suite


if __name__ == "__main__":
    main()
