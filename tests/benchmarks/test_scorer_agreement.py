"""The scorer-agreement benchmark runs on its case table and our scorer agrees with the human verdict on every
issue-11 repro (the cases whose note says so). Nothing is timed."""

from __future__ import annotations

import json

from tests.benchmarks.test_benchmarks_smoke import load


def test_scorer_agreement_runs_and_the_fixed_scorer_reads_every_repro_right(tmp_path):
    bench = load("scorer_agreement")
    result = bench.main(["--before", "HEAD", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "scorer-agreement.json").read_text())
    assert (tmp_path / "scorer-agreement.md").read_text().startswith("# Scorer agreement")
    assert saved["agreement"] == result["agreement"]
    n = len(saved["cases"])
    assert n >= 60 and all(len(v) == n for v in saved["verdicts"].values())
    repros = [i for i, c in enumerate(saved["cases"]) if "issue 11 repro" in c["note"]]
    assert len(repros) >= 15
    after = saved["verdicts"]["rarl after"]
    wrong = [saved["cases"][i]["id"] for i in repros if after[i] != (saved["cases"][i]["human"] == "correct")]
    assert wrong == []


def test_reference_rules_keep_their_documented_quirks():
    bench = load("scorer_agreement")
    case = {"answer_type": "closed", "answer": "yes", "choices": [],
            "completion": "<think>t</think><answer>Yes, there is a nodule.</answer>"}
    assert bench.medevalkit(case) is False  # "nodule" holds a "no": both words mentioned
    assert bench.llava_med(bench.reply)(case) is True
    mc = {"answer_type": "multiple_choice", "answer": "MRI", "choices": ["CT", "MRI"],
          "completion": "<answer>B. MRI</answer>"}
    assert bench.medvlm_r1(mc) is False  # any A-J counts as a letter: "B. MRI" holds B and I
    assert bench.levenshtein_ratio("left lung", "right lung") == 12 / 19  # LCS "t lung": the wrong side pays 0.63
    assert bench.levenshtein_ratio("", "") == 1.0
