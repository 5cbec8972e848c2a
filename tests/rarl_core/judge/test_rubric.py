"""The offline rubric judge: a table of cases, determinism, its label."""

from __future__ import annotations

from pathlib import Path

import pytest

from rarl_core.judge import judge_rows
from rarl_core.judge.rubric import rubric_score
from tests.rarl_core.judge.conftest import judge_config


Q = "Is there a fracture of the left femur?"
RUBRIC_TABLE = [
    # (question, reference, completion, correctness, reasoning)
    (Q, "yes", "<think>The left femur shows a lucent fracture line through the shaft.</think><answer>Yes</answer>",
     3, 3),
    (Q, "yes", "<think>The left femur shows a lucent fracture line through the shaft.</think><answer>No</answer>",
     0, 2),  # wrong answer; the reasoning (no negation) does not support "no"
    (Q, "no", "<think>The left femur cortex is intact, no fracture is seen.</think><answer>no</answer>", 3, 3),
    (Q, "no", "<think>Looking carefully at the cortex of the femur here.</think><answer>Not sure</answer>", 0, 2),
    (Q, "yes", "Yes, there is a fracture.", 3, 0),  # no tags: read as evaluation reads it, so judge and metric agree
    (Q, "yes", "<think>fracture", 0, 0),  # malformed: unclosed tags
    (Q, "yes", "<answer>yes</answer>", 3, 0),  # correct but no reasoning
    ("What organ is shown?", "left lung",
     "<think>Air-filled organ in the chest, this is the left lung.</think><answer>Left lung</answer>", 3, 3),
    ("What organ is shown?", "left lung",
     "<think>The organ is in the thorax, a lung field.</think><answer>lung</answer>", 2, 3),
    ("What organ is shown?", "lung", "<think>I think the organ is the lung on this scan.</think>"
     "<answer>the left lung with a nodule</answer>", 2, 2),
    ("What organ is shown?", "lung",
     "<think>The organ here is a lung in the chest.</think><answer>no lung</answer>", 0, 2),
    ("Which lobe is affected?", "right lower lobe",
     "<think>Consolidation appears in the lower part of the right hemithorax.</think><answer>lower lobe</answer>",
     2, 2),
    ("Which lobe is affected?", "right lower lobe",
     "<think>Density in the left upper zone of the lobe.</think><answer>left upper lobe</answer>", 1, 3),
    ("What modality is used?", "CT", "<think>This greyscale cross-section looks like a scan.</think>"
     "<answer>MRI</answer>", 0, 1),
    (Q, "yes", "<think>a b</think><answer>yes</answer><answer>no</answer>", 0, 0),  # the last answer counts
]


@pytest.mark.parametrize(("question", "reference", "completion", "correctness", "reasoning"), RUBRIC_TABLE)
def test_rubric_table(question: str, reference: str, completion: str, correctness: int, reasoning: int) -> None:
    score = rubric_score(question, reference, completion)
    assert (score.correctness, score.reasoning) == (correctness, reasoning), score.rationale
    assert score.rationale


def test_rubric_is_default_offline_deterministic_and_labelled(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rows = [{"id": i, "question": q, "answer": a, "completion": c} for i, (q, a, c, *_) in enumerate(RUBRIC_TABLE)]
    first = judge_rows(rows, judge_config(), progress=False)
    second = judge_rows(rows, judge_config(), progress=False)
    assert first.scores == second.scores
    assert {s["judge"] for s in first.scores} == {"rubric (offline)"} and first.judge == "rubric (offline)"
    assert (first.calls, first.cache_hits, first.errors) == (0, 0, 0)
    assert first.scores[0] == {"id": 0, "correctness": 1.0, "reasoning": 1.0, "rationale": first.scores[0]["rationale"],
                               "judge": "rubric (offline)", "error": None}
    assert not (tmp_path / "cache").exists()  # the offline judge needs no cache
