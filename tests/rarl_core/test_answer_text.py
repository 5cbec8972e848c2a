"""Tests for the word tables behind answer comparison: canonical tokens, plurals, spelling, numbers."""

from __future__ import annotations

import pytest

from rarl_core.answer_text import CONTRAST_SETS, american, answer_phrase, answer_tokens, singular


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Two lungs", ["2", "lung"]),
        ("twenty", ["20"]),
        ("1,000 ml", ["1000", "ml"]),
        ("1, 2", ["1", "2"]),  # a list, not a thousands separator
        ("3,5", ["3", "5"]),
        ("3.5cm", ["3.5", "cm"]),
        ("0.50", ["0.5"]),
        ("007", ["7"]),
        ("T2-weighted", ["t2", "weighted"]),  # a sequence name is not a number with a unit
        ("The Haemorrhages", ["hemorrhage"]),
        ("bilateral", ["both"]),
        ("MR", ["mri"]),
        ("", []),
        (None, []),
    ],
)
def test_answer_tokens(text, expected):
    assert answer_tokens(text) == expected


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("lungs", "lung"), ("lesions", "lesion"), ("arteries", "artery"), ("masses", "mass"), ("branches", "branch"),
        ("vertebrae", "vertebra"), ("metastases", "metastasis"), ("bronchi", "bronchus"), ("tissues", "tissue"),
        # singular words that end in s stay
        ("mass", "mass"), ("pancreas", "pancreas"), ("uterus", "uterus"), ("pelvis", "pelvis"),
        ("ascites", "ascites"), ("gas", "gas"), ("yes", "yes"), ("is", "is"),
    ],
)
def test_singular(token, expected):
    assert singular(token) == expected


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("haemorrhage", "hemorrhage"), ("haematoma", "hematoma"), ("oedema", "edema"), ("oesophageal", "esophageal"),
        ("anaemia", "anemia"), ("ischaemic", "ischemic"), ("hypoglycaemia", "hypoglycemia"), ("tumour", "tumor"),
        ("centre", "center"), ("diarrhoea", "diarrhea"), ("paediatric", "pediatric"), ("caecum", "cecum"),
        # American spellings and unrelated words are left alone
        ("hemorrhage", "hemorrhage"), ("edema", "edema"), ("aorta", "aorta"), ("heart", "heart"),
    ],
)
def test_american(token, expected):
    assert american(token) == expected


def test_contrast_sets_are_canonical_and_disjoint():
    members = [m for group in CONTRAST_SETS for m in group]
    assert len(members) == len(set(members))
    assert all(answer_phrase(m) == m for m in members)
