"""What SFT and GRPO share: the refusal of a distributed run that is not what the accelerate config asked for."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from accelerate.utils import DistributedType

from rarl_core.config import ConfigError
from rarl_core.training import check_distributed
from tests.conftest import config_with


def trainer_as(kind: DistributedType):
    return SimpleNamespace(accelerator=SimpleNamespace(distributed_type=kind))


def test_an_fsdp_config_that_accelerate_runs_as_ddp_is_refused(monkeypatch):
    """accelerate 1.15 runs accelerate/fsdp.yaml on CPU processes as MULTI_CPU (DDP), silently: refused, naming the
    config and the CPU one to use. Where the processes do shard (FSDP) or no sharding was asked for, training goes
    on."""
    resources = config_with({"resources": {"num_processes": 2, "accelerate_config": "accelerate/fsdp.yaml"}}).resources
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ConfigError, match=r"accelerate/fsdp.yaml\) asks for FSDP.*as MULTI_CPU.*cpu_ddp.yaml"):
        check_distributed(trainer_as(DistributedType.MULTI_CPU), resources)
    check_distributed(trainer_as(DistributedType.FSDP), resources)
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    check_distributed(trainer_as(DistributedType.MULTI_CPU), resources)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ConfigError, match="asks for DEEPSPEED"):
        check_distributed(trainer_as(DistributedType.MULTI_CPU), resources)
