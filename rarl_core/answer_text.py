"""The word tables behind answer comparison, and the closed-set word match built on them.

Split from `answers.py` so that the parser reads as rules and this file as data; everything is pure string work.
- `normalize`: the light VQA convention (case, punctuation, articles) that the rewards and baselines also use.
- `answer_tokens`: the canonical form two answers are compared in: "Two lungs" and "2 lung", "haemorrhage" and
  "hemorrhage", "1,000" and "1000", "3.5cm" and "3.5 cm" give the same tokens.
- `STOPWORDS` and `singular`: the project's one stopword list and one plural folding (rewards and judge use them).
- the yes/no word sets `answers.closed_label` reads, and `names_closed_word` with its `CONTRAST_SETS`, for closed
  questions whose reference is a word ("left or right?").
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

ARTICLES = frozenset({"a", "an", "the"})

# The one stopword list of the project (the rewards' grounding and agreement checks, the judge's content words).
STOPWORDS = frozenset("""
a an the this that these those there here it its is are was were be been being am do does did done has have had
of in on at to for from by with and or but if as into onto over under than then so thus therefore hence
what which where when who whom whose why how any some all each both either neither other such
can could would should will shall may might must i you he she we they me my your our their his her them us
yes no not answer question please one two
""".split())


def normalize(text: str | None) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace: the VQA convention for comparing answers.

    Apostrophes are deleted ("don't" -> "dont", so negations stay one token); other punctuation becomes a space
    ("x-ray" -> "x ray"); a dot between digits is kept so "3.5" does not become "35".
    """
    if not text:
        return ""
    t = unicodedata.normalize("NFKC", text).lower()
    t = re.sub(r"['\u2019`]", "", t)
    t = re.sub(r"[^\w\s.]|_", " ", t)
    t = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", t)
    return " ".join(tok for tok in t.split() if tok not in ARTICLES)


# ----------------------------------------------------------------------------------------------------------------
# Plurals
# ----------------------------------------------------------------------------------------------------------------

# Latin and Greek plurals of anatomy and pathology, which no suffix rule gets right.
_IRREGULAR_PLURALS = {
    "vertebrae": "vertebra", "bronchi": "bronchus", "metastases": "metastasis", "diagnoses": "diagnosis",
    "stenoses": "stenosis", "thromboses": "thrombosis", "anastomoses": "anastomosis", "foci": "focus",
    "nuclei": "nucleus", "calculi": "calculus", "emboli": "embolus", "thrombi": "thrombus", "phalanges": "phalanx",
    "apices": "apex", "cortices": "cortex", "vertices": "vertex", "indices": "index", "appendices": "appendix",
    "testes": "testis", "axes": "axis", "bullae": "bulla", "fistulae": "fistula", "sulci": "sulcus",
    "teeth": "tooth", "feet": "foot", "women": "woman", "men": "man", "children": "child",
}
# Singular nouns that end in "s" (a suffix rule would cut them: "pancreas" is not the plural of "pancrea").
_INVARIANT = frozenset({
    "pancreas", "ascites", "diabetes", "herpes", "series", "species", "lens", "atlas", "biceps", "triceps",
    "quadriceps", "measles", "mumps", "rickets", "news", "gas", "yes", "this", "its", "has", "was", "is", "as",
})


def singular(token: str) -> str:
    """Fold a plural token to its singular ("lungs" -> "lung", "arteries" -> "artery", "masses" -> "mass",
    "vertebrae" -> "vertebra"); anything else (short words, "-ss", "-us", "-is", "pancreas") is returned as is.

    Both sides of a comparison go through it, so a wrong fold of a rare word still matches itself.
    """
    if token in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[token]
    if len(token) <= 3 or token in _INVARIANT or not token.endswith("s") or token.endswith(("ss", "us", "is")):
        return token
    if token.endswith("ies") and len(token) > 4:
        return token[:-3] + "y"
    if token.endswith(("sses", "xes", "ches", "shes", "zes")):
        return token[:-2]
    return token[:-1]


# ----------------------------------------------------------------------------------------------------------------
# British and American spelling
# ----------------------------------------------------------------------------------------------------------------

# Prefixes of British medical spellings and their American forms ("haemorrhage" -> "hemorrhage", "oedema" ->
# "edema"): the American form is the one the datasets mostly use.
_BRITISH_PREFIXES = (
    ("haem", "hem"), ("anaem", "anem"), ("ischaem", "ischem"), ("leukaem", "leukem"), ("septicaem", "septicem"),
    ("hyperaem", "hyperem"), ("oedem", "edem"), ("oesophag", "esophag"), ("oestr", "estr"), ("orthopaed", "orthoped"),
    ("paed", "ped"), ("gynaec", "gynec"), ("caec", "cec"), ("aetiol", "etiol"), ("coeliac", "celiac"), ("foet", "fet"),
)
_BRITISH_WORDS = {
    "tumour": "tumor", "colour": "color", "behaviour": "behavior", "centre": "center", "fibre": "fiber",
    "litre": "liter", "metre": "meter", "calibre": "caliber", "grey": "gray", "sulphate": "sulfate",
    "sulphur": "sulfur", "manoeuvre": "maneuver", "ageing": "aging", "localised": "localized",
    "generalised": "generalized", "visualised": "visualized",
}
_AEMIA = re.compile(r"aem(?=ia|ic)")  # hypoglycaemia, bacteraemic
_OEA = re.compile(r"oea$")  # diarrhoea, dyspnoea, apnoea


def american(token: str) -> str:
    """The American spelling of a British medical spelling ("tumour" -> "tumor", "anaemia" -> "anemia"), else the
    token unchanged."""
    if token in _BRITISH_WORDS:
        return _BRITISH_WORDS[token]
    for british, us in _BRITISH_PREFIXES:
        if token.startswith(british):
            return us + token[len(british):]
    return _OEA.sub("ea", _AEMIA.sub("em", token))


# ----------------------------------------------------------------------------------------------------------------
# Numbers
# ----------------------------------------------------------------------------------------------------------------

_NUMBER_WORDS = {word: str(i) for i, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")  # "1,000" -> "1000", but "1, 2" and "3,5" stay apart
_UNITS = "mm|cm|m|km|ml|l|mg|g|kg|mcg|hu|cc|mmhg|bpm|min|h|hr|s|y|yr|yo|kv|mas"
_NUMBER_UNIT = re.compile(rf"^(\d+(?:\.\d+)?)({_UNITS})$")  # "3.5cm" -> "3.5", "cm"
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


def _canonical_number(token: str) -> str:
    """ "05" -> "5", "3.50" -> "3.5", "2.0" -> "2", "0.5" stays: one spelling per value."""
    whole, _, fraction = token.partition(".")
    whole, fraction = whole.lstrip("0") or "0", fraction.rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


# ----------------------------------------------------------------------------------------------------------------
# Canonical tokens
# ----------------------------------------------------------------------------------------------------------------


# One name per thing where radiology writes it two ways.
_SYNONYMS = {"bilateral": ("both",), "mr": ("mri",), "xray": ("x", "ray")}


@lru_cache(maxsize=65536)
def _canonical(token: str) -> tuple[str, ...]:
    if token in _SYNONYMS:
        return _SYNONYMS[token]
    unit = _NUMBER_UNIT.match(token)
    if unit:
        return _canonical_number(unit.group(1)), unit.group(2)
    if token in _NUMBER_WORDS:
        return (_NUMBER_WORDS[token],)
    if _NUMBER.match(token):
        return (_canonical_number(token),)
    return (american(singular(token)),)


def answer_tokens(text: str | None) -> list[str]:
    """The canonical tokens two answers are compared in: `normalize`, then thousands separators joined, a number
    split from its unit, number words as digits (zero to twenty), a few synonyms merged ("bilateral" -> "both",
    "MR" -> "mri"), plurals folded and British spelling made American. Order is kept."""
    if not text:
        return []
    joined = _THOUSANDS.sub("", unicodedata.normalize("NFKC", text))
    return [piece for token in normalize(joined).split() for piece in _canonical(token)]


def answer_phrase(text: str | None) -> str:
    """`answer_tokens` joined by single spaces: the canonical string for exact comparison and phrase search."""
    return " ".join(answer_tokens(text))


# ----------------------------------------------------------------------------------------------------------------
# Yes/no words
# ----------------------------------------------------------------------------------------------------------------

# Words with a fixed role in a yes/no reading (see `answers.closed_label`), all in normalised form.
YES_WORDS = frozenset({"yes", "yeah", "yep", "yup", "affirmative"})
NO_WORDS = frozenset({"no", "nope"})
# Negators scope over the whole clause: "no evidence of effusion present" is a no, "not absent" is a yes.
NEGATORS = frozenset({
    "no", "not", "nope", "none", "nothing", "never", "without", "neither", "nor", "cannot", "cant", "isnt", "arent",
    "wasnt", "werent", "doesnt", "dont", "didnt", "hasnt", "havent", "wont",
})
_VERB_NEGATORS = frozenset({"not", "never", "isnt", "arent", "wasnt", "werent", "doesnt", "dont", "didnt"})
POSITIVE_PREDICATES = frozenset({
    "present", "positive", "visible", "seen", "evident", "detected", "identified", "noted", "observed", "exists",
    "exist",
})
NEGATIVE_PREDICATES = frozenset({"absent", "negative", "missing", "lacking"})
# Words that are a verdict only when nothing follows them ("That is right.", "True."): before a noun they describe
# it, and in radiology "right lobe" is a side and "false lumen" a finding.
VERDICT_WORDS = {"right": "yes", "correct": "yes", "true": "yes", "wrong": "no", "incorrect": "no", "false": "no"}
# A one-word reference that states a polarity; any other closed reference ("left", "liver", "MRI") is a word to name.
POLAR_REFERENCES = {"true": "yes", "present": "yes", "positive": "yes", "false": "no", "absent": "no",
                     "negative": "no"}
ANAPHORA = frozenset({"it", "its", "this", "that", "thats", "they", "these", "those", "which"})
CONJUNCTIONS = frozenset({"and", "or", "so", "also", "then", "yet"})
HEDGES = frozenset({"maybe", "perhaps", "possibly", "unsure", "uncertain", "unknown", "unclear", "indeterminate"})
HEDGE_PHRASES = re.compile(r"\b(?:dont know|not sure|cannot (?:be )?(?:tell|determined?|say)|cant (?:tell|say))\b")


# ----------------------------------------------------------------------------------------------------------------
# Closed-set alternatives
# ----------------------------------------------------------------------------------------------------------------

# Words that answer the same closed question ("left or right?", "CT or MRI?", "liver or spleen?"): a reply that
# names the reference and, unnegated, another member of its set names both, and is wrong. In canonical form.
CONTRAST_SETS: tuple[frozenset[str], ...] = tuple(frozenset(answer_phrase(w) for w in group.split(",")) for group in (
    "left,right",
    "upper,lower,middle",
    "anterior,posterior",
    "superior,inferior",
    "medial,lateral",
    "axial,coronal,sagittal",
    "ct,mri,x ray,ultrasound,pet",
    "t1,t2,flair,dwi",
    "male,female",
    "benign,malignant",
    "increased,decreased",
    "hyperdense,hypodense,isodense",
    "hyperintense,hypointense,isointense",
    "acute,chronic",
    "solid,cystic",
    "single,multiple",
    "larger,smaller",
    "above,below",
    "liver,spleen,kidney,lung,heart,brain,pancreas,stomach,bladder,colon,rectum,gallbladder,esophagus,trachea,"
    "aorta,small intestine,large intestine,duodenum,uterus,prostate,adrenal gland,thyroid",
))
_CONTRAST_WORDS = frozenset({"than", "compared", "versus", "vs"})
CLAUSE_BREAK = re.compile(r"[.,;:!?\n]+|\b(?:but|however|although|though|whereas)\b", re.IGNORECASE)


def clauses(text: str) -> list[list[str]]:
    """Normalised tokens of each clause (split at punctuation and "but"/"however"), empty clauses dropped."""
    return [tokens for clause in CLAUSE_BREAK.split(text) if (tokens := normalize(clause).split())]


def hedged(text: str) -> bool:
    """Does the answer hedge ("maybe", "I don't know", "cannot be determined")? A hedge is never right."""
    flat = normalize(text)
    return bool(HEDGE_PHRASES.search(flat) or HEDGES.intersection(flat.split()))


def names_closed_word(pred: str, reference: str) -> bool:
    """Does the reply name the closed reference word, unnegated, without also naming an alternative to it?

    The words that must appear are the reference's members of `CONTRAST_SETS` (all of it when it has none); one of
    them may go unsaid when the reply names no rival from its set ("left" for "left lung"). A rival counts when it
    shares an unnegated clause with the reference ("left and right") or stands alone ("left, right"), not after
    "than" ("the left is larger than the right") and not negated ("left, not right").
    """
    if hedged(pred):
        return False
    ref = answer_phrase(reference)
    sets = [group for group in CONTRAST_SETS if any(has_phrase(ref, p) for p in group)]
    required = [p for group in sets for p in group if has_phrase(ref, p)] or [ref]
    rivals = {p for group in sets for p in group} - set(required)
    parts = [answer_phrase(" ".join(c)) for c in clauses(pred)]
    said = {p for p in required if any(_names(c, p) for c in parts)}
    if not said:
        return False
    for phrase in set(required) - said:
        group = next(g for g in sets if phrase in g)
        if any(_names(c, rival) for c in parts for rival in group - {phrase}):
            return False
    for clause in parts:
        for rival in rivals:
            if _names(clause, rival) and not _after_contrast(clause, rival) and (
                    any(has_phrase(clause, p) for p in required) or _stands_alone(clause, rival)):
                return False
    return True


def has_phrase(haystack: str, phrase: str) -> bool:
    """Does `phrase` occur in `haystack` as whole words (both canonical strings)?"""
    return bool(phrase) and re.search(rf"(?<!\S){re.escape(phrase)}(?!\S)", haystack) is not None


def _names(clause: str, phrase: str) -> bool:
    """The clause names the phrase and does not negate it: no negator before it ("not left", "no liver"), no
    negated verb after it ("left is not involved")."""
    match = re.search(rf"(?<!\S){re.escape(phrase)}(?!\S)", clause) if phrase else None
    if match is None:
        return False
    before, after = clause[:match.start()].split(), clause[match.end():].split()
    return not (NEGATORS.intersection(before) or _VERB_NEGATORS.intersection(after))


def _after_contrast(clause: str, phrase: str) -> bool:
    """The phrase follows "than"/"compared"/"versus": a term of comparison, not a second answer."""
    match = re.search(rf"(?<!\S){re.escape(phrase)}(?!\S)", clause)
    return match is not None and bool(_CONTRAST_WORDS.intersection(clause[:match.start()].split()))


def _stands_alone(clause: str, phrase: str) -> bool:
    return [t for t in clause.split() if t not in STOPWORDS] == phrase.split()
