"""The `rarl` command. Stages run through DVC, so a stage whose inputs did not change is skipped, and every run
is recorded in dvc.lock: the command line, `dvc repro` and the Prefect flow share one cache.

Only the standard library is imported here, so `rarl --help` is instant.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from tasks import STAGES

STAGE_HELP = {
    "prepare": "normalise the datasets in params.yaml (starter set built from bundled medical images)",
    "augment": "expand training questions into several prompt styles (diversity prompting)",
    "tiny_model": "build the embedded default tiny Qwen2-VL offline",
    "sft": "SFT warm-up with TRL (LoRA merged, or full-parameter)",
    "grpo": "GRPO-LoRA with the format / accuracy / reasoning rewards",
    "merge": "merge the GRPO adapter into the SFT model (save_pretrained folder)",
    "evaluate": "base vs SFT vs GRPO on in-domain and unseen sets",
    "report": "write the comparison report",
}


def pipeline_env() -> dict[str, str]:
    """The environment for DVC's stage commands: this interpreter's bin first on PATH, so `python -m tasks.x`
    runs in the same environment as `rarl`, even when the virtualenv is not activated."""
    from tasks.common import QUIET_ENV

    env = {**QUIET_ENV, **os.environ}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def dvc(*args: str) -> int:
    return subprocess.call([sys.executable, "-m", "dvc", *args], env=pipeline_env())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rarl",
        description="RARL pipeline: prepare -> augment -> tiny_model -> sft -> grpo -> merge -> evaluate -> report. "
        "Values come from params.yaml; stages run through DVC and are skipped when nothing they depend on changed.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the whole pipeline (dvc repro) and print the comparison report")
    run.add_argument("--force", action="store_true", help="re-run every stage even if up to date")
    for stage in STAGES:
        p = sub.add_parser(stage, help=STAGE_HELP[stage])
        p.add_argument("--force", action="store_true", help="re-run even if up to date")
    check = sub.add_parser("check", help="validate params.yaml and exit")
    check.add_argument("--params", default="params.yaml")
    sub.add_parser("judge", help="score predictions with the LLM judge (rarl judge --help)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["judge"]:
        from tasks.judge import main as judge_main

        return judge_main(argv[1:])
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
    if args.command == "run":
        code = dvc("repro", *force)
        from rarl_core.config import load_config

        report = Path(load_config().paths.report)
        if code == 0 and report.is_file():
            print(f"\nReport: {report} (MLflow UI: see README, 'Compare runs')")
        return code
    return dvc("repro", "--single-item", args.command, *force)


if __name__ == "__main__":
    raise SystemExit(main())
