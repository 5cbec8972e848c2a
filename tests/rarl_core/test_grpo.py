"""GRPO's reward summary: the first and last logged means of each named reward."""

from __future__ import annotations

from rarl_core.grpo import summarize_rewards


def test_summarize_rewards_reads_first_and_last_logged_step():
    logs = [{"loss": 1.0}, {"reward": 0.2, "rewards/format_reward/mean": 0.5},
            {"reward": 0.6, "rewards/format_reward/mean": 0.9}]
    out = summarize_rewards(logs, ["format"])
    assert out == {"reward_first": 0.2, "reward_last": 0.6, "format_first": 0.5, "format_last": 0.9}
