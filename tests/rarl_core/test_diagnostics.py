"""Diagnostics on small tables of completions: consistency between think and answer, collapse of yes/no answers."""

from __future__ import annotations

import pytest

from rarl_core.diagnostics import cell_diagnostics, think_agrees


# ----------------------------------------------------------------------------------------------------------------
# Diagnostics
# ----------------------------------------------------------------------------------------------------------------

CT = "<think>grayscale cross-section with bright bone, so CT</think>"
MRI = "<think>grayscale slice with soft-tissue contrast, so MRI</think>"
OPTIONS = ["CT", "MRI", "ultrasound"]


@pytest.mark.parametrize(
    "completion, question, answer_type, expected",
    [
        (f"{CT}<answer>yes</answer>", "Is this a CT image?", "closed", True),
        (f"{CT}<answer>no</answer>", "Is this a CT image?", "closed", False),
        (f"{MRI}<answer>no</answer>", "Is this a CT image?", "closed", True),  # concluded MRI: not a CT
        (f"{MRI}<answer>yes</answer>", "Is this a CT image?", "closed", False),
        ("<think>No lesion is seen.</think><answer>no</answer>", "Is there a lesion?", "closed", True),
        ("<think>A lesion is present.</think><answer>no</answer>", "Is there a lesion?", "closed", False),
        (f"{MRI}<answer>MRI</answer>", "What imaging modality is this?", "open", True),
        (f"{MRI}<answer>CT</answer>", "What imaging modality is this?", "open", False),
        (f"{MRI}<answer>B</answer>", "Which modality?", "multiple_choice", True),
        (f"{MRI}<answer>A</answer>", "Which modality?", "multiple_choice", False),
        ("<answer>yes</answer>", "Is this a CT image?", "closed", None),  # no think: nothing to agree with
        (f"{CT}", "Is this a CT image?", "closed", None),  # no answer
    ],
)
def test_think_agrees(completion, question, answer_type, expected):
    record = {"completion": completion, "question": question, "answer_type": answer_type,
              "choices": OPTIONS if answer_type == "multiple_choice" else []}
    assert think_agrees(record) is expected


def record(completion: str, answer: str, parsed: str | None, question: str = "Is this a CT image?") -> dict:
    correct = parsed == answer
    return {"id": completion + answer, "question": question, "answer": answer, "answer_type": "closed",
            "choices": [], "completion": completion, "parsed_answer": parsed, "correct": correct,
            "f1": float(correct), "recall": float(correct), "completion_tokens": 10,
            "well_formed": parsed is not None and "<think>" in completion}


def test_collapse_and_consistency_of_a_cell():
    """Every closed answer 'no' while the truth is half yes: majority share 100% beside 50% for the truth; the
    CT-concluding thinks that answer 'no' disagree with their own reasoning."""
    rows = [record(f"{CT}<answer>no</answer>", "yes", "no"), record(f"{CT}<answer>no</answer>", "yes", "no"),
            record(f"{MRI}<answer>no</answer>", "no", "no"), record(f"{MRI}<answer>no</answer>", "no", "no"),
            record("<answer>no</answer>", "no", "no")]
    d = cell_diagnostics(rows)
    assert d["accuracy"] == pytest.approx(3 / 5)
    assert d["format_rate"] == pytest.approx(4 / 5)
    assert d["yes_share"] == 0.0 and d["majority_share"] == 1.0
    assert d["reference_majority_share"] == pytest.approx(3 / 5)
    assert d["consistency_rate"] == pytest.approx(2 / 4)  # the think-less row is not counted


def test_cell_without_closed_questions_has_no_collapse_measure():
    rows = [{**record(f"{MRI}<answer>MRI</answer>", "MRI", "MRI", "What modality?"), "answer_type": "open"}]
    d = cell_diagnostics(rows)
    assert d["majority_share"] is None and d["yes_share"] is None and d["consistency_rate"] == 1.0


