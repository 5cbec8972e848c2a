"""The comparison report: every cell appears with its baseline; the generalisation gap is unseen minus in-domain."""

from rarl_core.report import generalisation_gaps, render_markdown

EVAL = {
    "baselines": {"a": 0.4, "b": 0.3},
    "models": {
        "sft": {"a": {"plain": {"n": 10, "accuracy": 0.8, "accuracy_ci_low": 0.6, "accuracy_ci_high": 0.9,
                                "format_rate": 1.0}},
                "b": {"plain": {"n": 10, "accuracy": 0.5, "accuracy_ci_low": 0.3, "accuracy_ci_high": 0.7,
                                "format_rate": 1.0}}},
    },
}


def test_gap_and_table():
    assert abs(generalisation_gaps(EVAL, ["a"], ["b"])["sft"]["plain"] + 0.3) < 1e-9
    text = render_markdown(EVAL, {"grpo": {"reward_first": 0.5, "reward_last": 0.75}}, ["a"], ["b"])
    assert "| sft | a | in-domain | plain | 10 | 80.0 [60.0, 90.0] | 40.0 | 100.0 |" in text
    assert "| sft | b | unseen | plain | 10 | 50.0 [30.0, 70.0] | 30.0 | 100.0 |" in text
    assert "| sft | plain | -30.0 |" in text
    assert "| grpo | reward_last | 0.75 |" in text
