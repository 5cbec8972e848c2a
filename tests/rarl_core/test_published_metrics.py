"""Tests for the published VQA metric definitions: each against values computed by hand on a small table where the
definitions disagree, plus the rules that make them disagree."""

from __future__ import annotations

import pytest

from rarl_core.published_metrics import (
    DEFINITIONS,
    POOLED_ACCURACY,
    llava_med_closed_hit,
    llava_med_open_recall,
    medevalkit_closed_correct,
    medevalkit_open_row,
    medevalkit_response,
    multimedeval_row,
    published_metrics,
    vqa_normalize,
)


def record(kind, answer, completion, correct=False, choices=()):
    return {"id": f"q-{answer}", "answer_type": kind, "answer": answer, "completion": completion,
            "choices": list(choices), "correct": correct, "question": "q?"}


# Seven questions on which the definitions disagree; per row, what each says (worked out in the comments).
TABLE = [
    # 1. ours yes | LLaVA-Med hit | MultiMedEval correct | MedEvalKit wrong: "nodule" holds a "no"
    record("closed", "yes", "<think>t</think><answer>Yes, there is a nodule.</answer>", correct=True),
    # 2. all right: "not" contains "no" (LLaVA-Med, MedEvalKit); MultiMedEval adds "not" to the "no" reference
    record("closed", "no", "<think>t</think><answer>not present</answer>", correct=True),
    # 3. all wrong; LLaVA-Med's pre-fix script dropped this row instead of counting it
    record("closed", "no", "<think>t</think><answer>yes</answer>"),
    # 4. ours wrong (both labels) | LLaVA-Med hit | MultiMedEval correct | MedEvalKit wrong (both words)
    record("closed", "yes", "<answer>yes and no</answer>"),
    # 5. ours right | LLaVA-Med miss (no yes/no in it) | MultiMedEval: an open row, recall 1 | MedEvalKit: not exact
    record("closed", "left", "<answer>The lesion is on the left.</answer>", correct=True),
    # 6. ours right (plural folded) | recall 0.5 everywhere, not exact
    record("open", "pleural effusion", "<think>t</think><answer>Pleural effusions</answer>", correct=True),
    # 7. untagged reply after the think: ours right | recall 1 | MedEvalKit: "the liver" is not "liver"
    record("open", "liver", "<think>t</think>The liver", correct=True),
    # 8. multiple choice: outside the published definitions, inside the pooled accuracy
    record("multiple_choice", "MRI", "<answer>B</answer>", correct=True, choices=("CT", "MRI")),
]

EXPECTED = {
    POOLED_ACCURACY: 6 / 8,
    "llava_med/closed_accuracy": 3 / 5,  # rows 1, 2, 4
    "llava_med/open_recall": (0.5 + 1.0) / 2,
    "multimedeval/closed_accuracy": 3 / 4,  # yes/no references only: rows 1-4, right on 1, 2, 4
    "multimedeval/open_recall": (1.0 + 0.5 + 1.0) / 3,  # rows 5, 6, 7
    "multimedeval/open_accuracy": 2 / 3,  # recall >= 0.75 on rows 5 and 7
    # F1 on token sets per row 1-7: 2(1/4)/(5/4), 0, 0, 2(1/3)/(4/3), 2(1/4)/(5/4), 1/2, 1 ("the" dropped)
    "multimedeval/f1": (0.4 + 0 + 0 + 0.5 + 0.4 + 0.5 + 1.0) / 7,
    # BLEU-1 per row: 1/4, 0, 0, 1/3, 1/4, 1/2, 1 (each reply at least as long as its reference: no penalty)
    "multimedeval/bleu1": (0.25 + 0 + 0 + 1 / 3 + 0.25 + 0.5 + 1.0) / 7,
    "medevalkit/closed_accuracy": 1 / 5,  # only row 2
    "medevalkit/open_exact": 0.0,
    "medevalkit/open_f1": (0.5 + 2 / 3) / 2,
    "medevalkit/open_bleu1": (0.5 + 0.5) / 2,  # row 7: 1 of 2 words, longer than the reference
    "medevalkit/open_rouge1": (0.5 + 2 / 3) / 2,
    "medevalkit/open_rouge2": 0.0,  # row 6 shares no bigram; row 7's reference has none
    "medevalkit/open_rougel": (0.5 + 2 / 3) / 2,
    "medevalkit/accuracy": 1 / 7,  # (1 closed right + 0 open exact) / 7
}


def test_each_definition_against_hand_computed_values():
    got = published_metrics(TABLE)
    assert set(got) - {"medevalkit/open_bleu4"} == set(EXPECTED)
    for key, value in EXPECTED.items():
        assert got[key] == pytest.approx(value, abs=1e-7), key
    assert got["medevalkit/open_bleu4"] == pytest.approx(0.0, abs=1e-30)  # no 4-gram in a two-word reply


def test_the_definitions_disagree_on_the_same_replies():
    got = published_metrics(TABLE)
    closed = {name: got[f"{name}/closed_accuracy"] for name in ("llava_med", "multimedeval", "medevalkit")}
    assert len(set(closed.values())) == 3
    assert got[POOLED_ACCURACY] != got["llava_med/closed_accuracy"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Two Nodules.", "2 nodules"),
        ("None", "0"),
        ("x-ray", "x ray"),
        ("x - ray", "x ray"),  # a mark touching a space is deleted
        ("1,000 cells", "1000 cells"),
        ("3.5 cm.", "3.5 cm"),
        ("e.g. the liver", "eg liver"),  # every period not followed by a digit goes
        ("dont", "don't"),
        ("It's (left)", "it's left"),
    ],
)
def test_vqa_normalize(text, expected):
    assert vqa_normalize(text) == expected


@pytest.mark.parametrize(
    ("reply", "reference", "hit"),
    [
        ("Yes.", "yes", True),
        ("nodule", "no", True),  # substrings: the definition, not fixed
        ("It is not enlarged", "no", True),
        ("normal", "yes", False),
        ("yes", "no", False),  # counted as a miss (the fixed script); the old one dropped it
        ("left", "left", False),  # a word reference can only be hit by a reply containing yes/no
        ("The left one, not the right", "left", True),
    ],
)
def test_llava_med_closed_hit(reply, reference, hit):
    assert llava_med_closed_hit(reply, reference) is hit


def test_llava_med_closed_accuracy_counts_wrong_answers():
    records = [record("closed", "yes", "<answer>yes</answer>"), record("closed", "no", "<answer>yes</answer>")]
    assert published_metrics(records)["llava_med/closed_accuracy"] == 0.5  # the pre-fix script printed 1.0


@pytest.mark.parametrize(
    ("reply", "reference", "expected"),
    [
        ("pleural effusion", "pleural effusion", 1.0),
        ("The effusion is pleural and large", "pleural effusion", 1.0),  # order and extra words are free
        ("effusion effusion", "pleural effusion", 2 / 3),  # the reply's count of a shared word: tp 2, fn 1
        ("two", "2", 1.0),
        ("", "liver", 0.0),
    ],
)
def test_llava_med_open_recall(reply, reference, expected):
    assert llava_med_open_recall(reply, reference) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("reply", "reference", "closed", "correct"),
    [
        ("not", "no", True, True),  # "not" counts for "no"
        ("yes or no", "no", True, True),  # both references are met by naming both
        ("yes or no", "yes", True, True),
        ("nodule", "no", True, False),  # whole words here, unlike LLaVA-Med
        ("Yes", "Yes", True, True),
        ("left", "left", False, None),  # not yes/no: an open row for MultiMedEval
    ],
)
def test_multimedeval_closed_rule(reply, reference, closed, correct):
    row = multimedeval_row(reply, reference)
    assert row["closed"] is closed and row.get("correct") is correct


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("the answer is \\boxed{liver}", "liver"),
        ("\\boxed{\\frac{a}{b}}", "\\frac{a}{b}"),
        ("<answer>Yes</answer> <answer>No</answer>", "yes no"),  # every block, joined
        ("<answer>yes", "<answer>yes"),  # no complete block: the whole text
        ("The answer is liver", " liver"),  # split after its pattern, not stripped again
        ("Final answer: liver", " liver"),
    ],
)
def test_medevalkit_response(reply, expected):
    assert medevalkit_response(reply) == expected


@pytest.mark.parametrize(
    ("reply", "reference", "correct"),
    [
        ("Yes.", "yes", True),
        ("No, it is in the right lobe.", "no", True),
        ("Yes, there is a nodule.", "yes", False),  # "nodule" holds a "no": both words, so wrong
        ("yes and no", "yes", False),
        ("Left.", "left", True),  # other closed references: exact after periods are removed
        ("The left", "left", False),
    ],
)
def test_medevalkit_closed_rule(reply, reference, correct):
    assert medevalkit_closed_correct(reply, reference) is correct


def test_medevalkit_open_row_exact_is_a_plain_string_match():
    assert medevalkit_open_row("Liver", "liver")["exact"] == 1.0
    assert medevalkit_open_row("liver.", "liver")["exact"] == 0.0
    empty = medevalkit_open_row("", "liver")  # MedEvalKit itself crashes on this one
    assert empty["f1"] == 0.0 and empty["rouge1"] == 0.0 and empty["bleu1"] == 0.0


def test_absent_types_are_omitted_and_multiple_choice_is_outside():
    only_mc = [record("multiple_choice", "MRI", "<answer>B</answer>", correct=True, choices=("CT", "MRI"))]
    assert published_metrics(only_mc) == {POOLED_ACCURACY: 1.0}
    only_closed = published_metrics([record("closed", "yes", "<answer>yes</answer>")])
    assert not any("open" in key for key in only_closed)
    assert published_metrics([]) == {}


def test_pooled_accuracy_needs_the_scored_records():
    rows = [{k: v for k, v in record("closed", "yes", "yes").items() if k != "correct"}]
    assert POOLED_ACCURACY not in published_metrics(rows)


def test_a_bad_record_names_its_row():
    with pytest.raises(ValueError, match=r"record 1 \(id 'x'\) lacks \['completion'\]"):
        published_metrics([record("closed", "yes", "yes"), {"id": "x", "answer": "no", "answer_type": "closed"}])
    with pytest.raises(ValueError, match="record 0: unknown answer_type 'CLOSED'"):
        published_metrics([record("CLOSED", "yes", "yes")])


def test_keys_are_valid_mlflow_metric_names():
    import re

    assert all(re.fullmatch(r"[/\w.\- ]+", key) for key in published_metrics(TABLE))


def test_every_key_prefix_has_its_sentence():
    keys = published_metrics(TABLE)
    assert {key.split("/")[0] for key in keys} == set(DEFINITIONS)
    assert all(sentence.strip() for sentence in DEFINITIONS.values())
