"""Tests for completion parsing and answer scoring, including the answers a policy under RL learns to exploit."""

from __future__ import annotations

import re

import pytest

from rarl_core.answers import (
    AnswerScore,
    ParsedCompletion,
    choice_index,
    closed_label,
    normalize,
    parse_completion,
    recall,
    score_answer,
    token_f1,
)

CHOICES = ["pneumonia", "pleural effusion", "effusion", "atypical pneumonia"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>dark lungs</think><answer>yes</answer>", ParsedCompletion("dark lungs", "yes", True)),
        ("  <think> a b </think>\n\n<answer> no </answer>\n", ParsedCompletion("a b", "no", True)),
        ("<THINK>x</THINK><Answer>CT</Answer>", ParsedCompletion("x", "CT", True)),
        # empty think is structurally fine; the rewards judge emptiness
        ("<think></think><answer>yes</answer>", ParsedCompletion("", "yes", True)),
        # repeated answer: last block is the answer, not well formed
        ("<think>t</think><answer>yes</answer><answer>no</answer>", ParsedCompletion("t", "no", False)),
        ("<think>t</think><think>u</think><answer>no</answer>", ParsedCompletion("t", "no", False)),
        # text outside the blocks
        ("Sure! <think>t</think><answer>no</answer>", ParsedCompletion("t", "no", False)),
        ("<think>t</think><answer>no</answer> hope this helps", ParsedCompletion("t", "no", False)),
        ("<think>t</think> so <answer>no</answer>", ParsedCompletion("t", "no", False)),
        # wrong order
        ("<answer>no</answer><think>t</think>", ParsedCompletion("t", "no", False)),
        # truncated inside the answer: lenient answer, not well formed
        ("<think>t</think><answer>yes", ParsedCompletion("t", "yes", False)),
        # truncated inside the think: no think, no answer
        ("<think>still thinking", ParsedCompletion(None, None, False)),
        # no tags at all: untagged text is never an answer
        ("yes", ParsedCompletion(None, None, False)),
        ("", ParsedCompletion(None, None, False)),
        (None, ParsedCompletion(None, None, False)),
        # empty answer is None
        ("<think>t</think><answer>   </answer>", ParsedCompletion("t", None, True)),
        # answer nested inside think
        ("<think>x <answer>yes</answer></think>", ParsedCompletion("x <answer>yes</answer>", "yes", False)),
    ],
)
def test_parse_completion(text, expected):
    assert parse_completion(text) == expected


def test_parse_giant_completion_is_fast_and_correct():
    think = "the lesion appears bright. " * 400  # ~10k characters
    parsed = parse_completion(f"<think>{think}</think><answer>yes</answer>")
    assert parsed.well_formed and parsed.answer == "yes" and len(parsed.think) > 9_000
    junk = parse_completion("<answer>" * 2_000 + "x" * 10_000)
    assert junk == ParsedCompletion(None, "x" * 10_000, False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Liver!", "liver"),
        ("  an   MRI  scan ", "mri scan"),
        ("X-ray", "x ray"),
        ("3.5 cm.", "3.5 cm"),
        ("Don't", "dont"),
        ("", ""),
        (None, ""),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", "yes"),
        ("Yes.", "yes"),
        ("YES", "yes"),
        ("no", "no"),
        ("No.", "no"),
        ("true", "yes"),
        ("false", "no"),
        ("present", "yes"),
        ("positive", "yes"),
        ("Yes, it is present", "yes"),
        ("not present", "no"),
        ("No evidence of pneumothorax", "no"),
        ("no evidence of effusion present", "no"),
        ("absent", "no"),
        ("negative", "no"),
        ("none", "no"),
        ("It isn't", "no"),
        ("not true", "no"),
        ("not absent", "yes"),
        ("No, not present", "no"),
        ("Yes, there is a nodule", "yes"),
        ("There is no nodule", "no"),
        # "no" inside other words is not a no
        ("nodule", None),
        ("node", None),
        ("normal", None),
        ("nonspecific nodular opacity", None),
        ("knowledge", None),
        # both yes and no: ambiguous
        ("yes no", None),
        ("yes and no", None),
        ("Yes/No", None),
        ("yes, it is absent", None),
        ("present but negative", None),
        # hedges and empties
        ("maybe", None),
        ("I don't know", None),
        ("cannot be determined", None),
        ("", None),
        (None, None),
        ("pneumonia", None),
    ],
)
def test_closed_label(text, expected):
    assert closed_label(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", 1),
        ("b", 1),
        ("B.", 1),
        ("(B)", 1),
        ("[b]", 1),
        ("B)", 1),
        ("option b", 1),
        ("Option B", 1),
        ("Answer: D", 3),
        ("The answer is B.", 1),
        ("pleural effusion", 1),
        ("Pleural Effusion.", 1),
        ("B. Pleural effusion", 1),
        ("(A) pneumonia", 0),
        ("effusion", 2),
        ("atypical pneumonia", 3),  # longest option wins over the option it contains
        ("Pneumonia, given the consolidation", 0),
        ("a pneumonia", 0),  # the article, not option A
        ("The answer is pneumonia", 0),
        # stuffing and contradictions
        ("A B C D", None),
        ("A, B, C, D", None),
        ("A. B. C. D.", None),
        ("(A)(B)", None),
        ("AB", None),
        ("pneumonia or effusion", None),
        ("pneumonia pleural effusion effusion atypical pneumonia", None),
        ("B. pneumonia", None),  # the letter says B, the text says A
        ("not pneumonia", None),
        ("E", None),  # beyond the four options
        ("", None),
        ("   ", None),
        (None, None),
        ("cardiomegaly", None),
    ],
)
def test_choice_index(text, expected):
    assert choice_index(text, CHOICES) == expected


def test_choice_index_without_choices_is_none():
    assert choice_index("A", []) is None


@pytest.mark.parametrize(
    ("pred", "ref", "f1", "rec"),
    [
        ("left lower lobe pneumonia", "left lower lobe pneumonia", 1.0, 1.0),
        ("pneumonia in the left lower lobe", "left lower lobe pneumonia", 8 / 9, 1.0),
        ("left lung", "right lung", 0.5, 0.5),
        ("liver", "liver and spleen", 0.5, 1 / 3),
        ("liver spleen kidney heart brain lung", "liver", 2 / 7, 1.0),
        ("cat", "liver", 0.0, 0.0),
        ("", "liver", 0.0, 0.0),
        (None, "liver", 0.0, 0.0),
        ("", "", 1.0, 1.0),
    ],
)
def test_token_f1_and_recall(pred, ref, f1, rec):
    assert token_f1(pred, ref) == pytest.approx(f1)
    assert recall(pred, ref) == pytest.approx(rec)


@pytest.mark.parametrize(
    ("pred", "ref", "kind", "choices", "expected"),
    [
        ("yes", "yes", "closed", (), AnswerScore(True, 1.0, 1.0, 1.0)),
        ("Yes, it is present.", "Yes", "closed", (), AnswerScore(True, 1.0, 1.0, 1.0)),
        ("not present", "no", "closed", (), AnswerScore(True, 1.0, 1.0, 1.0)),
        ("yes", "no", "closed", (), AnswerScore(False, 0.0, 0.0, 0.0)),
        ("nodule", "no", "closed", (), AnswerScore(False, 0.0, 0.0, 0.0)),
        ("normal", "no", "closed", (), AnswerScore(False, 0.0, 0.0, 0.0)),
        ("yes and no", "yes", "closed", (), AnswerScore(False, 0.0, 0.0, 0.0)),
        ("yes no", "no", "closed", (), AnswerScore(False, 0.0, 0.0, 0.0)),
        # closed row whose reference is not yes/no: normalised exact match
        ("Liver", "liver", "closed", (), AnswerScore(True, 1.0, 1.0, 1.0)),
        ("spleen", "liver", "closed", (), AnswerScore(False, 0.0, 0.0, 0.0)),
        ("B", "pleural effusion", "multiple_choice", CHOICES, AnswerScore(True, 1.0, 1.0, 1.0)),
        ("pleural effusion", "pleural effusion", "multiple_choice", CHOICES, AnswerScore(True, 1.0, 1.0, 1.0)),
        ("A", "pleural effusion", "multiple_choice", CHOICES, AnswerScore(False, 0.0, 0.0, 0.0)),
        ("A B C D", "pleural effusion", "multiple_choice", CHOICES, AnswerScore(False, 0.0, 0.0, 0.0)),
        (", ".join(CHOICES), "effusion", "multiple_choice", CHOICES, AnswerScore(False, 0.0, 0.0, 0.0)),
        ("The Liver", "liver", "open", (), AnswerScore(True, 1.0, 1.0, 1.0)),
        ("pneumonia in the left lower lobe", "left lower lobe pneumonia", "open", (),
         AnswerScore(False, pytest.approx(8 / 9), 1.0, pytest.approx(8 / 9))),
        ("kidney", "liver", "open", (), AnswerScore(False, 0.0, 0.0, 0.0)),
        (None, "yes", "closed", (), AnswerScore(False, 0.0, 0.0, 0.0)),
        ("", "liver", "open", (), AnswerScore(False, 0.0, 0.0, 0.0)),
        ("   ", "B", "multiple_choice", ["x", "y"], AnswerScore(False, 0.0, 0.0, 0.0)),
    ],
)
def test_score_answer(pred, ref, kind, choices, expected):
    assert score_answer(pred, ref, kind, choices) == expected


def test_score_answer_open_stuffing_costs_precision():
    stuffed = score_answer("liver spleen kidney heart lung brain", "liver", "open")
    assert not stuffed.correct
    assert stuffed.recall == 1.0
    assert stuffed.score == pytest.approx(2 / 7)


@pytest.mark.parametrize("bad", ["yes/no", "OPEN", "", None])
def test_score_answer_unknown_type_names_the_value(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        score_answer("yes", "yes", bad)


def test_score_answer_mc_reference_not_in_choices_raises():
    with pytest.raises(ValueError, match="cardiomegaly"):
        score_answer("A", "cardiomegaly", "multiple_choice", CHOICES)
    with pytest.raises(ValueError, match="no choices"):
        score_answer("A", "pneumonia", "multiple_choice", ())


def test_choices_as_numpy_array_from_parquet():
    np = pytest.importorskip("numpy")
    options = np.array(CHOICES, dtype=object)
    assert choice_index("B", options) == 1
    assert score_answer("B", "pleural effusion", "multiple_choice", options).correct
    assert score_answer("yes", "yes", "closed", np.array([], dtype=object)).correct
    assert score_answer("yes", "yes", "closed", None).correct
