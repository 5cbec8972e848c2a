"""Launch a training stage on the configured hardware: in this process on one GPU (or CPU), through
`accelerate launch` on several (resources.num_gpus > 1, with the accelerate config named in params.yaml).

dvc.yaml runs `python -m tasks.launch sft` and `python -m tasks.launch grpo --variant <name>`, so `dvc repro`, the
`rarl` command and the Prefect flow (which runs the DVC stages) all launch multi-GPU training the same way.
"""

from __future__ import annotations

import os
import sys

TRAINING_STAGES = ("sft", "grpo")


def command(stage: str, args: list[str], num_gpus: int, accelerate_config: str) -> list[str]:
    """The command that runs `stage`: plain python, or accelerate with one process per GPU."""
    if num_gpus <= 1:
        return [sys.executable, "-m", f"tasks.{stage}", *args]
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", accelerate_config,
            "--num_processes", str(num_gpus), "-m", f"tasks.{stage}", *args]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in TRAINING_STAGES:
        print(f"usage: python -m tasks.launch {{{','.join(TRAINING_STAGES)}}} [stage options]", file=sys.stderr)
        return 2
    stage, args = argv[0], argv[1:]
    params = args[args.index("--params") + 1] if "--params" in args else "params.yaml"
    from rarl_core.config import ConfigError, load_config

    try:
        resources = load_config(params).resources
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cmd = command(stage, args, resources.num_gpus, resources.accelerate_config)
    if resources.num_gpus <= 1:
        from importlib import import_module

        return import_module(f"tasks.{stage}").main(args)
    print("+", " ".join(cmd), flush=True)
    os.execv(cmd[0], cmd)
    return 1  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
