"""The `rarl` command. Stages run through DVC, so a stage whose inputs did not change is skipped, and every run
is recorded in dvc.lock: the command line, `dvc repro` and the Prefect flow share one cache.

Only the standard library is imported here, so `rarl --help` is instant.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from tasks import STAGES

STAGE_HELP = {
    "prepare": "normalise the datasets in params.yaml (starter set built from bundled medical images)",
    "augment": "expand training questions into several prompt styles (diversity prompting)",
    "tiny_model": "build the embedded default tiny Qwen2-VL offline",
    "sft": "SFT warm-up with TRL (LoRA merged, or full-parameter)",
    "grpo": "GRPO-LoRA, one run per variant in grpo.variants (rl: format + accuracy; rarl: + reasoning)",
    "merge": "merge each GRPO adapter into the SFT model (save_pretrained folders)",
    "evaluate": "base vs SFT vs each GRPO variant on in-domain and unseen sets",
    "report": "write the comparison report",
}


def dvc(*args: str) -> int:
    from tasks.common import pipeline_env

    return subprocess.call([sys.executable, "-m", "dvc", *args], env=pipeline_env())


def profile_overrides(path: str) -> list[str]:
    """A profile file's values as `section.key=value` overrides, in the syntax of `dvc exp run -S`."""
    import yaml

    def flat(data: dict, prefix: str = "") -> list[str]:
        out = []
        for key, value in data.items():
            if isinstance(value, dict):
                out += flat(value, f"{prefix}{key}.")
            else:
                text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
                out.append(f"{prefix}{key}={text}")
        return out

    return flat(yaml.safe_load(Path(path).read_text()) or {})


def check_overrides(overrides: list[str], params: str = "params.yaml") -> None:
    """Validate params.yaml with the overrides applied, before any stage starts (raises ConfigError)."""
    import yaml

    from rarl_core.config import ConfigError, config_from_dict

    data = yaml.safe_load(Path(params).read_text()) or {}
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep:
            raise ConfigError(f"override {override!r} is not KEY=VALUE")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {override!r}: {part} is not a section")
        node[leaf] = yaml.safe_load(value)
    config_from_dict(data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rarl",
        description="RARL pipeline: prepare -> augment -> tiny_model -> sft -> grpo -> merge -> evaluate -> report. "
        "Values come from params.yaml; stages run through DVC and are skipped when nothing they depend on changed. "
        "`rarl compare` runs the seeded comparison of RARL, RL and SFT (compare/dvc.yaml).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the whole pipeline (dvc repro) and print the comparison report")
    run.add_argument("--force", action="store_true", help="re-run every stage even if up to date")
    run.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a params.yaml value for this run, recorded as a DVC experiment (dvc exp run -S)")
    run.add_argument("--profile", metavar="YAML",
                     help="apply every value of a profile file (e.g. profiles/qwen2vl-2b-a100-40gb.yaml) as -S overrides")
    compare = sub.add_parser("compare", help="does RARL beat RL and SFT? every GRPO variant and an equal-compute SFT "
                             "control per seed, with intervals and verdicts (dvc repro compare/dvc.yaml)")
    compare.add_argument("--force", action="store_true", help="re-run the comparison even if up to date")
    compare.set_defaults(profile=None)
    compare.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override a params.yaml value (e.g. compare.seeds=[0,1,2,3,4]), as a DVC experiment")
    for stage in (s for s in STAGES if s != "judge"):  # `rarl judge` scores files; the stage is `rarl judge --stage`
        p = sub.add_parser(stage, help=STAGE_HELP[stage])
        p.add_argument("--force", action="store_true", help="re-run even if up to date")
    check = sub.add_parser("check", help="validate params.yaml and exit")
    check.add_argument("--params", default="params.yaml")
    sub.add_parser("judge", help="score predictions with the LLM judge (rarl judge --help)", add_help=False)
    sub.add_parser("serve", help="start the Prefect server, a worker and the MLflow UI on 127.0.0.1 (rarl serve --help)",
                   add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["judge"]:
        return judge_main(argv[1:])
    if argv[:1] == ["serve"]:
        from rarl.serve import main as serve_main

        return serve_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "check":
        from rarl_core.config import ConfigError, load_config

        try:
            load_config(args.params)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{args.params}: ok")
        return 0
    force = ["--force"] if args.force else []
    if args.command in ("run", "compare"):
        comparing = args.command == "compare"
        overrides = [*profile_overrides(args.profile), *args.set] if args.profile else args.set
        # the comparison is a pipeline file of its own; its --force re-runs it, not the stages it needs
        target = ["compare/dvc.yaml"] if comparing else []
        if comparing and force:
            force = ["--force", "--single-item"]
        if overrides:  # recorded as a DVC experiment, so the run is reproducible without this command
            from rarl_core.config import ConfigError

            try:
                check_overrides(overrides)
            except ConfigError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
            code = dvc("exp", "run", *force, *(arg for o in overrides for arg in ("-S", o)), *target)
        else:
            code = dvc("repro", *force, *target)
        from rarl_core.config import load_config

        paths = load_config().paths
        report = Path(paths.compare) / "compare.md" if comparing else Path(paths.report)
        if code == 0 and report.is_file():
            print(f"\nReport: {report} (MLflow UI: see README, 'Compare runs')")
        return code
    return dvc("repro", "--single-item", args.command, *force)


def judge_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rarl judge", description="Score predictions with the judge of params.yaml "
                                "(the offline rubric by default, or any LiteLLM model).")
    p.add_argument("predictions", metavar="PREDICTIONS", type=Path,
                   help="JSONL with id, question, answer (reference) and completion per line")
    p.add_argument("--out", required=True, type=Path, metavar="SCORES", help="output JSONL of scores, input order")
    p.add_argument("--model", help="override judge.model ('rubric' or a LiteLLM model string)")
    p.add_argument("--api-base", dest="api_base", help="override judge.api_base (OpenAI-compatible server URL)")
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    return p


def judge_main(argv: list[str]) -> int:
    """`rarl judge PREDICTIONS --out SCORES`: the judge: section of params.yaml, --model/--api-base applied on top.

    Exit codes: 0 done; 1 too many rows could not be scored (the scores file is still written); 2 bad input or config.
    """
    args = judge_parser().parse_args(argv)
    import yaml

    from rarl_core.config import ConfigError, JudgeConfig, section_from_dict
    from rarl_core.judge import JudgeFailed, judge_file, summarize_scores

    try:
        if not args.params.is_file():
            raise ConfigError(f"{args.params} not found: run from the project root or pass --params")
        section = (yaml.safe_load(args.params.read_text()) or {}).get("judge")
        if not isinstance(section, dict):
            raise ConfigError("judge must be a mapping of the judge's settings (see the shipped params.yaml)")
        section |= {key: getattr(args, key) for key in ("model", "api_base") if getattr(args, key) is not None}
        cfg = section_from_dict(JudgeConfig, section, "judge")
        run = judge_file(args.predictions, args.out, cfg)
    except (ConfigError, yaml.YAMLError) as exc:
        print(f"rarl judge: error: {args.params}: {exc}", file=sys.stderr)
        return 2
    except JudgeFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"rarl judge: error: {exc}", file=sys.stderr)
        return 2
    s = summarize_scores(run.scores)
    means = ("n/a" if s["mean_correctness"] is None
             else f"correctness {s['mean_correctness']:.3f}, reasoning {s['mean_reasoning']:.3f}")
    print(f"judge [{run.judge}]: {s['n_scored']} scored, {s['n_errors']} errors; {means}; "
          f"{run.calls} calls, {run.cache_hits} cache hits, {run.elapsed_s:.1f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
