"""Tests for completion parsing and answer scoring, including the answers a policy under RL learns to exploit."""

from __future__ import annotations

import re

import pytest

from rarl_core.answers import (
    STOPWORDS,
    AnswerScore,
    ParsedCompletion,
    choice_index,
    closed_label,
    final_answer,
    normalize,
    parse_completion,
    recall,
    reference_label,
    score_answer,
    singular,
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
        # nested answer tags: the answer keeps no tag
        ("<think>t</think><answer><answer>heart</answer></answer>", ParsedCompletion("t", "heart", False)),
        ("<answer><answer>heart</answer></answer>", ParsedCompletion(None, "heart", False)),
        # the strict reading: untagged answers stay unread, whatever they contain
        ("<think>t</think> yes", ParsedCompletion("t", None, False)),
        ("Nodule < 5 mm", ParsedCompletion(None, None, False)),
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
        ("<think>t</think><answer>yes</answer>", "yes"),
        ("<answer><answer>heart</answer></answer>", "heart"),
        ("<think>t</think><answer>yes", "yes"),  # cut off inside the answer
        # untagged replies are read as the answer (evaluation, judge), "<" included
        ("Yes", "Yes"),
        ("  Nodule < 5 mm ", "Nodule < 5 mm"),
        ("<think>the image shows a lesion</think> yes", "yes"),
        ("<think>a</think> <think>b</think>\nno", "no"),
        ("reasoning without its opening tag</think> no", "no"),  # a template that opened the think itself
        ("yes</answer>", "yes"),
        # no answer: only thinking, or cut off while thinking
        ("<think>only thinking</think>", None),
        ("<think>still thinking", None),
        ("The liver. <think>second thoughts", "The liver."),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_final_answer_reads_untagged_replies(text, expected):
    assert final_answer(text) == expected


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


# ---------------------------------------------------------------------------------------------------------------
# Issue 11: scoring that agrees with a careful reader (each repro is a case; the tables above are unchanged)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # an opening yes/no is the answer; a clause about another finding does not undo it
        ("Yes, no consolidation is seen.", "yes"),
        ("Yes, the heart is not enlarged.", "yes"),
        ("No, it is in the right lobe.", "no"),
        ("No. The heart is enlarged.", "no"),
        ("Yes, there is a nodule in the left lung.", "yes"),
        ("No, no.", "no"),
        # ... but a clause about the asked finding that disagrees still makes it ambiguous
        ("Yes, no.", None),
        ("Yes. No.", None),
        ("Yes, not present.", None),
        ("No, it is present.", None),
        ("Yes, none.", None),
        ("Yes, but absent.", None),
        # "right", "correct", "true" are verdicts only when nothing follows them
        ("Right", "yes"),
        ("That is correct.", "yes"),
        ("That's wrong", "no"),
        ("the right lobe", None),
        ("true lumen", None),
        ("false lumen", None),
        ("It is in the right kidney", None),
    ],
)
def test_closed_label_reads_an_opening_answer(text, expected):
    assert closed_label(text) == expected


@pytest.mark.parametrize(
    ("reference", "expected"),
    [("yes", "yes"), ("No", "no"), ("No, it is not", "no"), ("absent", "no"), ("Positive", "yes"),
     ("Right", None), ("left", None), ("correct", None), ("liver", None), ("MRI", None), ("", None), (None, None)],
)
def test_reference_label_reads_yes_no_references_only(reference, expected):
    assert reference_label(reference) == expected


@pytest.mark.parametrize(
    ("pred", "ref", "correct"),
    [
        ("yes", "Right", False),  # "right" is a side, not "correct"
        ("Right", "yes", True),  # ... but as a prediction for a yes/no reference it is a verdict
        ("right", "Right", True),
        ("The lesion is on the left.", "left", True),
        ("left lung", "left", True),
        ("left and right", "left", False),  # names both
        ("left, right", "left", False),
        ("Left, not right.", "left", True),
        ("not left", "left", False),
        ("The left side is not involved.", "left", False),
        ("There is no mass in the left lung.", "left", False),
        ("The left kidney is larger than the right.", "left", True),
        ("possibly left", "left", False),  # a hedge is never right
        ("liver", "Liver", True),
        ("The liver, not the spleen.", "liver", True),
        ("liver and spleen", "liver", False),
        ("Liver. The spleen is unremarkable.", "liver", True),
        ("spleen", "liver", False),
        ("This is an MR image.", "MRI", True),
        ("CT", "MRI", False),
        ("CT or MRI", "MRI", False),
        ("bilateral", "both", True),
        ("left", "left lung", True),  # the lung goes unsaid, no rival organ named
        ("left kidney", "left lung", False),
        ("No, it is in the right lobe.", "no", True),
        ("No, it is in the right lobe.", "yes", False),
    ],
)
def test_closed_reference_word_is_matched_as_that_word(pred, ref, correct):
    assert score_answer(pred, ref, "closed").correct is correct


MODALITIES = ["CT", "MRI", "X-ray", "Ultrasound"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the letter is read before "a" is dropped as an article: A is CT, the text says MRI -> contradiction
        ("A. MRI", None),
        ("(A) MRI", None),
        ("A) MRI", None),
        ("A: MRI", None),
        ("A. CT", 0),
        ("A", 0),
        ("An MRI", 1),  # the article, then an option text
        ("a MRI scan", 1),
        # emphasis and phrasing around a letter
        ("**B**", 1),
        ("**B. MRI**", 1),
        ("The answer is **B**.", 1),
        ("I think it is B", 1),
        ("I think it is MRI", 1),
        ("B is correct", 1),
        ("B is the correct answer.", 1),
        ("Option C is correct.", 2),
        ("x ray", 2),
        ("**A** or **B**", None),
        ("B is correct, not C", None),
    ],
)
def test_choice_index_reads_the_letter_first(text, expected):
    assert choice_index(text, MODALITIES) == expected


@pytest.mark.parametrize(
    ("pred", "ref"),
    [
        ("two", "2"),
        ("Two lesions", "2 lesion"),
        ("1,000", "1000"),
        ("3.5cm", "3.5 cm"),
        ("3.50 cm", "3.5 cm"),
        ("lungs", "lung"),
        ("Arteries", "artery"),
        ("vertebrae", "vertebra"),
        ("haemorrhage", "hemorrhage"),
        ("Oedema", "edema"),
        ("oesophagus", "esophagus"),
        ("anaemia", "anemia"),
        ("tumour", "tumor"),
        ("centre", "center"),
        ("Pancreas", "pancreas"),
        ("The answer is liver.", "liver"),  # an answer phrase frames the answer
        ("I think it is the liver", "liver"),
    ],
)
def test_open_answers_match_across_numbers_plurals_and_spelling(pred, ref):
    assert score_answer(pred, ref, "open") == AnswerScore(True, 1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("pred", "ref"),
    [("3", "2"), ("1,000", "100"), ("3.5 mm", "3.5 cm"), ("lung", "liver"), ("left lung", "right lung")],
)
def test_open_canonical_forms_keep_different_answers_apart(pred, ref):
    assert not score_answer(pred, ref, "open").correct


def test_one_stopword_list_and_one_plural_folding():
    import rarl_core.rewards as rewards

    assert rewards.STOPWORDS is STOPWORDS and rewards.singular is singular
    assert not hasattr(rewards, "_STOPWORDS") and not hasattr(rewards, "_stem")
    assert {"the", "is", "yes", "no", "answer"} <= STOPWORDS and "lung" not in STOPWORDS
