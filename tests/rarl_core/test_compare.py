"""The comparison's units: the SFT control's budget, reward curves from trainer logs, and the checks that refuse a
comparison the paper's claims cannot be read from."""

from __future__ import annotations

import pytest
from transformers import TrainerControl, TrainerState

from rarl_core.compare import CONTROL, SFT, Budget, check_unit, control_budget, reward_curves
from rarl_core.config import ConfigError
from tests.conftest import config_with


# ----------------------------------------------------------------------------------------------------------------
# Training helpers
# ----------------------------------------------------------------------------------------------------------------


def test_budget_stops_on_tokens_or_time():
    state, control = TrainerState(), TrainerControl()
    budget = Budget(tokens=100)
    budget.on_log(None, state, control, logs={"num_tokens": 90})
    assert not control.should_training_stop
    budget.on_log(None, state, control, logs={"num_tokens": 120})
    assert control.should_training_stop
    control = TrainerControl()
    clock = Budget(seconds=0.0)
    clock.on_train_begin(None, state, control)
    clock.on_log(None, state, control, logs={})
    assert control.should_training_stop


def test_control_budget_is_the_mean_of_the_seeds_grpo_runs():
    runs = [{"seconds": 10.0, "tokens": 1000}, {"seconds": 20.0, "tokens": 3000}]
    assert control_budget("wall_clock", runs) == {"seconds": 15.0}
    assert control_budget("tokens", runs) == {"tokens": 2000}


def test_reward_curves_from_trainer_logs():
    logs = [{"step": 1, "loss": 0.1}, {"step": 5, "reward": 1.2, "rewards/format_reward/mean": 0.9,
                                       "rewards/format_reward/std": 0.1}, {"step": 10, "reward": 1.4}]
    assert reward_curves(logs) == {"reward": [(5, 1.2), (10, 1.4)], "rewards/format_reward/mean": [(5, 0.9)]}


@pytest.mark.parametrize(
    "section, message",
    [
        ({"control": "flops"}, "compare.control must be one of tokens, wall_clock"),
        ({"seeds": []}, "compare.seeds must list at least one seed"),
        ({"seeds": [0, 0]}, "each once"),
    ],
)
def test_bad_compare_params_are_rejected(section, message):
    from rarl_core.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        config_with({"compare": section})


def test_units_are_named_by_model_and_seed():
    cfg = config_with({"compare": {"seeds": [0, 1]}})
    check_unit(cfg, SFT, None)
    check_unit(cfg, CONTROL, 1)
    with pytest.raises(ConfigError, match="--seed 2 is not in compare.seeds"):
        check_unit(cfg, "rl", 2)
    with pytest.raises(ConfigError, match="takes no --seed"):
        check_unit(cfg, SFT, 0)
    with pytest.raises(ConfigError, match="--model 'ppo' is none of"):
        check_unit(cfg, "ppo", 0)
