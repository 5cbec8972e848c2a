"""The launch of a multi-process training stage: `accelerate launch` with the cores shared out between processes."""

from __future__ import annotations

import os

from tasks.common import accelerate_command


def threads_flag(cmd: list[str]) -> str:
    return cmd[cmd.index("--num_cpu_threads_per_process") + 1]


def test_each_process_gets_its_share_of_the_cores(monkeypatch):
    """Two torch processes on 2 cores with torch's default threads (every core each) ran 5x slower than with one
    thread each: the launch sets cores / processes, or OMP_NUM_THREADS where the user set it."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    cmd = accelerate_command("grpo", ["--params", "p.yaml", "--variant", "rl"], 2, "accelerate/cpu_ddp.yaml")
    assert cmd[cmd.index("--config_file") + 1] == "accelerate/cpu_ddp.yaml"
    assert cmd[cmd.index("--num_processes") + 1] == "2" and threads_flag(cmd) == "4"
    assert cmd[-6:] == ["-m", "tasks.grpo", "--params", "p.yaml", "--variant", "rl"]
    assert threads_flag(accelerate_command("sft", [], 3, "c.yaml")) == "2"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert threads_flag(accelerate_command("sft", [], 4, "c.yaml")) == "1"  # never 0
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_flag(accelerate_command("sft", [], 2, "c.yaml")) == "3"
