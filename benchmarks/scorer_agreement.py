"""Scorer agreement: how often each answer-scoring rule agrees with a careful human reading, on one table of
VQA-RAD / SLAKE / PathVQA-style completions (benchmarks/data/scorer_cases.jsonl: question, reference, answer type,
choices, completion, the human verdict and a note; every repro of issue 11 is a case, and so are adversarial ones).

Scored by our scorer before the issue-11 fix (`rarl_core/answers.py` at `--before`, read the way evaluation read
replies then) and after it, and by faithful re-implementations of the rules published models were scored or trained
with: LLaVA-Med's run_eval.py, MultiMedEval, MedEvalKit, MedVLM-R1's, Med-R1's and VLM-R1's accuracy rewards, and
TRL's accuracy_reward itself (imported). Each rule's source file is named where it is written. A rule that gives a
score rather than a verdict counts a case correct as its docstring says (`VERDICTS` below).

Med-R1, VLM-R1 and TRL call math_verify; without it (`pip install math-verify`) their columns say "not run".
Nothing here is timed: the result is the same on every machine.

    python benchmarks/scorer_agreement.py [--cases benchmarks/data/scorer_cases.jsonl] [--before main]
                                          [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

from _common import header  # benchmarks/_common.py

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's rarl_core, not another one installed in the environment

from rarl_core.answers import final_answer, reference_label, score_answer  # noqa: E402
from rarl_core.published_metrics import (  # noqa: E402
    llava_med_closed_hit,
    llava_med_open_recall,
    medevalkit_closed_correct,
    medevalkit_response,
    multimedeval_row,
)

CASES = REPO / "benchmarks" / "data" / "scorer_cases.jsonl"
GROUPS = ("closed yes/no", "closed word", "multiple choice", "open")

try:
    from math_verify import parse as mv_parse, verify as mv_verify
except ImportError:  # the columns that need it are reported as not run
    mv_parse = mv_verify = None


def load_cases(path: Path) -> list[dict]:
    cases = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        case = json.loads(line)
        if case.get("human") not in ("correct", "incorrect"):
            raise ValueError(f"{path}:{n}: 'human' must be 'correct' or 'incorrect', got {case.get('human')!r}")
        cases.append(case)
    return cases


def group(case: dict) -> str:
    if case["answer_type"] == "closed":
        return "closed yes/no" if reference_label(case["answer"]) else "closed word"
    return {"multiple_choice": "multiple choice", "open": "open"}[case["answer_type"]]


def letter(case: dict) -> str:
    """The reference option's letter (the R1-style rules are trained on letters)."""
    return "ABCDEFGHIJ"[case["choices"].index(case["answer"])]


# ----------------------------------------------------------------------------------------------------------------
# Ours, before and after
# ----------------------------------------------------------------------------------------------------------------


def load_before(rev: str) -> tuple[types.ModuleType, str]:
    """rarl_core/answers.py at `rev`, imported under another name, and the commit it resolved to."""
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.strip()
    source = subprocess.run(["git", "show", f"{rev}:rarl_core/answers.py"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout
    module = types.ModuleType("answers_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, f"{rev}:rarl_core/answers.py", "exec"), module.__dict__)
    return module, commit


def ours_before(answers: types.ModuleType) -> Callable[[dict], bool]:
    def verdict(case: dict) -> bool:
        # evaluate.extract_answer before issue 11: tagged answer, else the untagged reply when it holds no "<"
        completion = case["completion"]
        pred = answers.parse_completion(completion).answer
        if pred is None and "<" not in completion:
            pred = completion.strip() or None
        return answers.score_answer(pred, case["answer"], case["answer_type"], case["choices"]).correct
    return verdict


def ours_after(case: dict) -> bool:
    return score_answer(final_answer(case["completion"]), case["answer"], case["answer_type"], case["choices"]).correct


# ----------------------------------------------------------------------------------------------------------------
# LLaVA-Med (llava/eval/run_eval.py, fixed closed count), MultiMedEval (task_families.py VQA.evaluate): the
# definitions in rarl_core/published_metrics.py, per case
# ----------------------------------------------------------------------------------------------------------------


def reply(case: dict) -> str:
    return final_answer(case["completion"]) or ""


def llava_med(text_of: Callable[[dict], str]) -> Callable[[dict], bool | None]:
    """Closed: its hit. Open: it reports mean recall, no verdict; correct here when recall is 1 (every reference
    word in the reply). Multiple choice: not defined."""
    def verdict(case: dict) -> bool | None:
        text = text_of(case)
        if case["answer_type"] == "closed":
            return llava_med_closed_hit(text, case["answer"])
        if case["answer_type"] == "open":
            return llava_med_open_recall(text, case["answer"]) == 1.0
        return None
    return verdict


def multimedeval(case: dict) -> bool | None:
    """Its closed verdict for yes/no references; for the rest its open accuracy (recall >= 0.75)."""
    if case["answer_type"] == "multiple_choice":
        return None
    row = multimedeval_row(reply(case), case["answer"])
    return row["correct"] if row["closed"] else row["recall"] >= 0.75


# ----------------------------------------------------------------------------------------------------------------
# MedEvalKit: utils/utils.py judge_judgement / judge_close_end_vqa / judge_open_end_vqa (em) / judge_multi_choice
# ----------------------------------------------------------------------------------------------------------------


def medevalkit(case: dict) -> bool:
    text = reply(case)
    if case["answer_type"] == "closed":
        return medevalkit_closed_correct(text, case["answer"])
    if case["answer_type"] == "open":
        return medevalkit_response(text) == case["answer"].lower().strip()
    return medevalkit_multi_choice(case["choices"], letter(case).lower(), text)


def medevalkit_multi_choice(choices: list[str], answer: str, response: str) -> bool:
    """judge_multi_choice (the answer is the option letter, as in its PMC-VQA): a leading or trailing letter, else
    parse_response's text cut at the first "." and after the last ":", compared with the letter or option text,
    else the option most similar by difflib ratio."""
    alphas = [chr(ord("a") + i) for i in range(len(choices))]
    response = response.lower()
    if response.split("\n\n")[0] in alphas:
        response = response.split("\n\n")[0]
    elif response.split("\n\n")[-1].split(".")[0] in alphas:
        response = response.split("\n\n")[-1].split(".")[0]
    response = medevalkit_response(response).strip().lower().replace("\n", "")
    options = [c.lower() for c in choices]
    split = response.split(".")[0].split(":")[-1]
    if split == answer:
        return True
    if split in alphas:
        return options[ord(split) - ord("a")] == answer
    if split in options:
        return answer in alphas and split == options[ord(answer) - ord("a")]
    ratios = [difflib.SequenceMatcher(None, option, response).ratio() for option in options]
    best = max(range(len(options)), key=lambda i: (ratios[i], -i)) if max(ratios) > 0 else 0
    return alphas[best] == answer or options[best] == answer


# ----------------------------------------------------------------------------------------------------------------
# MedVLM-R1: src/open-r1-multimodal/src/open_r1/grpo.py accuracy_reward (multiple choice only)
# ----------------------------------------------------------------------------------------------------------------


def medvlm_r1_reward(content: str, solution: str) -> float:
    """1.0 for exactly one letter A-J in the first <answer> block and it is the reference letter with nothing else,
    0.5 with other text, else 0 (any A-J in the uppercased answer counts as a letter: "B. MRI" holds B, M, R, I)."""
    found = re.search(r"<answer>(.*?)</answer>", content, flags=re.DOTALL | re.IGNORECASE)
    answer = found.group(1).strip() if found else ""
    gold = re.sub(r"\s+", "", solution.upper())
    letters = re.findall(r"[A-J]", answer.upper())
    if len(letters) != 1 or letters[0] != gold:
        return 0.0
    return 0.5 if re.sub(r"(?i)" + letters[0], "", answer, count=1).strip() else 1.0


def medvlm_r1(case: dict) -> bool | None:
    """Correct when it pays anything (0.5 is the right letter with extra text)."""
    if case["answer_type"] != "multiple_choice":
        return None
    return medvlm_r1_reward(case["completion"], letter(case)) > 0


# ----------------------------------------------------------------------------------------------------------------
# Med-R1: src/r1-v/src/open_r1/grpo_vqa.py accuracy_reward
# ----------------------------------------------------------------------------------------------------------------


def gold(case: dict) -> str:
    return letter(case) if case["answer_type"] == "multiple_choice" else case["answer"]


def med_r1(case: dict) -> bool:
    """math_verify on the whole completion against the solution, else the first <answer> block (no newlines
    inside, case-sensitive) equal to the solution's."""
    content, solution = case["completion"], f"<answer>{gold(case)}</answer>"
    try:
        if float(mv_verify(mv_parse(content), mv_parse(solution))) > 0:
            return True
    except Exception:  # noqa: BLE001 - the rule itself swallows every failure here
        pass
    found = re.search(r"<answer>(.*?)</answer>", content)
    student = found.group(1).strip() if found else content.strip()
    return student == re.search(r"<answer>(.*?)</answer>", solution).group(1).strip()


# ----------------------------------------------------------------------------------------------------------------
# VLM-R1: src/open-r1-multimodal/src/open_r1/grpo_jsonl.py yes_no_reward / mcq_reward / default_accuracy_reward
# ----------------------------------------------------------------------------------------------------------------


def vlm_r1_extract_choice(text: str) -> str | None:
    """extract_choice: single capitals followed by punctuation or the end; several are ranked by nearby keywords,
    position in the last 30% and a following period."""
    text = re.sub(r"\s+", " ", text.upper())
    found = re.findall(r"(?<![A-Z])([A-Z])(?=[\.\,\?\!\:\;]|$)", text)
    if not found:
        return None
    if len(found) == 1:
        return found[0]
    keywords = ["答案", "选择", "正确", "是", "对", "answer", "correct", "choose", "select", "right", "认为",
                "应该", "觉得", "think", "believe", "should"]
    scores = {c: 0 for c in found}
    for c in found:
        pos = text.find(c)
        context = text[max(0, pos - 20):min(len(text), pos + 20)]
        scores[c] += sum(k.upper() in context for k in keywords)
        scores[c] += 2 if pos > len(text) * 0.7 else 0
        scores[c] += 1 if pos < len(text) - 1 and text[pos + 1] in "。.!！,，" else 0
    return max(scores.items(), key=lambda item: item[1])[0]


def _vlm_r1_clean(text: str) -> str:
    matches = re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)
    if matches:
        text = matches[-1]
    text = re.sub(r"(?<=\s)\n", "", text)
    text = re.sub(r"(?<!\s)\n", " ", text)
    text = re.sub(r"(?<=\s)\r", "", text)
    text = re.sub(r"(?<!\s)\r", " ", text)
    return text.strip().rstrip(".").lower()


def levenshtein_ratio(a: str, b: str) -> float:
    """python-Levenshtein's ratio: 1 - InDel distance / (len a + len b) = 2 LCS / (len a + len b) (checked equal to
    Levenshtein 0.27.5 on 2000 random pairs)."""
    if not a and not b:
        return 1.0
    prev = [0] * (len(b) + 1)
    for ch in a:
        cur = [0]
        for j, other in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if ch == other else max(prev[j], cur[j - 1]))
        prev = cur
    return 2 * prev[-1] / (len(a) + len(b))


def vlm_r1_reward(case: dict) -> float:
    content, solution = case["completion"], f"<answer>{gold(case)}</answer>"
    truth = re.search(r"<answer>(.*?)</answer>", solution).group(1).strip()
    if case["answer_type"] == "closed" and reference_label(case["answer"]):  # yes_no_reward
        low = content.lower()
        found = re.search(r"<answer>(.*?)</answer>", low, re.DOTALL)
        student = found.group(1).strip() if found else low.strip()
        said, wanted = re.search(r"(yes|no)", student), re.search(r"(yes|no)", truth.lower())
        return float((said.group(1) if said else "") == (wanted.group(1) if wanted else ""))
    if case["answer_type"] == "multiple_choice":  # mcq_reward
        found = re.search(r"<answer>(.*?)</answer>", content, re.DOTALL)
        student = vlm_r1_extract_choice(found.group(1).strip() if found else content.strip())
        wanted = vlm_r1_extract_choice(truth)
        return float(bool(student) and student == (wanted.upper() if wanted else solution.strip()))
    matches = re.findall(r"<answer>(.*?)</answer>", content, re.DOTALL)  # default_accuracy_reward
    student = matches[-1].strip() if matches else content.strip()
    try:
        if float(mv_verify(mv_parse(student), mv_parse(truth))) > 0:
            return 1.0
    except Exception:  # noqa: BLE001 - as the rule does
        pass
    if re.search(r"\d", truth):
        try:
            return float(float(_vlm_r1_clean(student)) == float(_vlm_r1_clean(truth)))
        except ValueError:
            return levenshtein_ratio(_vlm_r1_clean(student), _vlm_r1_clean(truth))
    choice = vlm_r1_extract_choice(truth)
    if choice:
        said = vlm_r1_extract_choice(student)
        return float(said == choice.upper()) if said else 0.0
    return levenshtein_ratio(_vlm_r1_clean(student), _vlm_r1_clean(truth))


def vlm_r1(case: dict) -> bool:
    """Correct when it pays at least 0.5 (its open-text reward is a fuzzy ratio: "left lung" earns 0.63 for
    "right lung")."""
    return vlm_r1_reward(case) >= 0.5


# ----------------------------------------------------------------------------------------------------------------
# TRL: trl/rewards/accuracy_rewards.py accuracy_reward, called as GRPOTrainer calls it
# ----------------------------------------------------------------------------------------------------------------


def trl_rule() -> Callable[[dict], bool | None]:
    from trl.rewards import accuracy_reward

    def verdict(case: dict) -> bool | None:
        [reward] = accuracy_reward([[{"role": "assistant", "content": case["completion"]}]], [gold(case)])
        return None if reward is None else reward == 1.0  # None: the gold does not parse as math, row skipped
    return verdict


# ----------------------------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------------------------

VERDICTS = {
    "rarl after": "score_answer(final_answer(completion)).correct",
    "rarl before": "the same with answers.py and evaluation's reading at --before",
    "LLaVA-Med": "closed: its (fixed) hit; open: recall = 1; on the reply without its think",
    "LLaVA-Med, whole completion": "the same rule on everything generated, think included",
    "MultiMedEval": "closed (yes/no reference): recall >= 0.4 with 'not'; otherwise recall >= 0.75",
    "MedEvalKit": "judge_judgement / exact match / judge_multi_choice",
    "MedVLM-R1 reward": "pays > 0 (multiple choice only)",
    "Med-R1 reward": "pays 1",
    "VLM-R1 reward": "pays >= 0.5",
    "TRL accuracy_reward": "pays 1; no verdict where the reference is not math",
}


def scorers(before_rev: str) -> tuple[dict[str, Callable[[dict], bool | None]], dict[str, str], str]:
    """Name -> verdict function, name -> why it was not run, and the --before commit."""
    answers_before, commit = load_before(before_rev)
    rules = {"rarl after": ours_after, "rarl before": ours_before(answers_before), "LLaVA-Med": llava_med(reply),
             "LLaVA-Med, whole completion": llava_med(lambda c: c["completion"]), "MultiMedEval": multimedeval,
             "MedEvalKit": medevalkit, "MedVLM-R1 reward": medvlm_r1}
    skipped = {}
    if mv_parse is None:
        skipped = {name: "math_verify is not installed (pip install math-verify)"
                   for name in ("Med-R1 reward", "VLM-R1 reward", "TRL accuracy_reward")}
    else:
        rules |= {"Med-R1 reward": med_r1, "VLM-R1 reward": vlm_r1, "TRL accuracy_reward": trl_rule()}
    return rules, skipped, commit


def agreement(cases: list[dict], verdicts: dict[str, list[bool | None]]) -> dict[str, dict[str, dict]]:
    """Per scorer and case group: n, agree, no_verdict, and whether the rule applies to the group at all (it gives
    a verdict on one of its cases); "all it scores" sums the groups it applies to."""
    table: dict[str, dict[str, dict]] = {}
    for name, said in verdicts.items():
        cells = {}
        for g in GROUPS:
            idx = [i for i, c in enumerate(cases) if group(c) == g]
            agree = sum(said[i] is not None and said[i] == (cases[i]["human"] == "correct") for i in idx)
            missing = sum(said[i] is None for i in idx)
            cells[g] = {"n": len(idx), "agree": agree, "no_verdict": missing, "applies": missing < len(idx)}
        applied = [c for c in cells.values() if c["applies"]]
        cells["all it scores"] = {key: sum(c[key] for c in applied) for key in ("n", "agree", "no_verdict")}
        cells["all it scores"]["applies"] = bool(applied)
        table[name] = cells
    return table


def cell(c: dict) -> str:
    if not c["applies"]:
        return "n/a"
    text = f"{c['agree']}/{c['n']} ({100 * c['agree'] / c['n']:.0f}%)"
    return text + (f", {c['no_verdict']} no verdict" if c["no_verdict"] else "")


def markdown(result: dict) -> str:
    counts = {g: sum(group(c) == g for c in result["cases"]) for g in GROUPS}
    lines = [
        "# Scorer agreement with a careful reader",
        "",
        f"{len(result['cases'])} VQA-RAD / SLAKE / PathVQA-style completions from `{result['case_file']}` "
        f"({', '.join(f'{n} {g}' for g, n in counts.items())}), each with a human verdict. A cell is the number of "
        "cases where the rule's verdict equals the human one; 'no verdict' counts as disagreeing; n/a: the rule has "
        f"no verdict for that kind of question. Before = `rarl_core/answers.py` at {result['before']}. "
        f"Generated by `benchmarks/scorer_agreement.py` on {result['date']}.",
        "",
        "| scorer | " + " | ".join(GROUPS) + " | all it scores | verdict used |",
        "|---|" + "---|" * (len(GROUPS) + 2),
    ]
    for name, cells in result["agreement"].items():
        lines.append(f"| {name} | " + " | ".join(cell(cells[g]) for g in (*GROUPS, "all it scores"))
                     + f" | {VERDICTS[name]} |")
    for name, why in result["not_run"].items():
        lines.append(f"| {name} | not run: {why} |" + " |" * (len(GROUPS) + 1))
    lines += ["", "Read with care: the cases and their verdicts were written by the author of the fix, beside it, so "
              "the 'rarl after' row is an upper bound for this scorer on unseen replies. What the table shows "
              "reliably is where each rule parts from a careful reading, case by case (the JSON has every verdict).",
              "", "Where our scorer (after the fix) and the human reader still disagree:", ""]
    after = result["verdicts"]["rarl after"]
    for case, said in zip(result["cases"], after):
        if said != (case["human"] == "correct"):
            lines.append(f"- {case['id']} ({group(case)}), reference `{case['answer']}`, reply "
                         f"`{(final_answer(case['completion']) or '')[:70]}`: human {case['human']}, ours "
                         f"{'correct' if said else 'incorrect'} ({case['note']})")
    lines += ["", "Cases the fix changed (before -> after):", ""]
    for case, old, new in zip(result["cases"], result["verdicts"]["rarl before"], after):
        if old != new:
            lines.append(f"- {case['id']}: {'correct' if old else 'incorrect'} -> {'correct' if new else 'incorrect'}"
                         f" (human {case['human']}; {case['note']})")
    if "VLM-R1 reward" in result["verdicts"]:
        strict = result["vlm_r1_open_full_credit"]
        lines += ["", f"VLM-R1 on open questions with 'pays 1' as the verdict instead of 'pays >= 0.5': "
                      f"{strict['agree']}/{strict['n']} agree."]
    lines += ["", "Sources of the re-implemented rules: " + "; ".join(result["sources"]) + "."]
    return "\n".join(lines) + "\n"


SOURCES = [
    "LLaVA-Med: microsoft/LLaVA-Med llava/eval/run_eval.py evaluate() + eval_metrics/evaluate_metrics.py "
    "calculate_f1score + eval_metrics/glossary.py normalize_word (branch v1.0, after b9a98a7)",
    "MultiMedEval: corentin-ryr/MultiMedEval multimedeval/task_families.py VQA.evaluate + utils.py clean_str",
    "MedEvalKit: alibaba-damo-academy/MedEvalKit utils/utils.py judge_judgement, judge_close_end_vqa, "
    "judge_open_end_vqa, judge_multi_choice, parse_response, extract; utils/SLAKE/SLAKE.py cal_metrics",
    "MedVLM-R1: JZPeterPan/MedVLM-R1 src/open-r1-multimodal/src/open_r1/grpo.py accuracy_reward",
    "Med-R1: Yuxiang-Lai117/Med-R1 src/r1-v/src/open_r1/grpo_vqa.py accuracy_reward",
    "VLM-R1: om-ai-lab/VLM-R1 src/open-r1-multimodal/src/open_r1/grpo_jsonl.py yes_no_reward, mcq_reward, "
    "default_accuracy_reward, extract_choice, clean_text",
    "TRL: trl.rewards.accuracy_reward (trl/rewards/accuracy_rewards.py), imported and called",
]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=CASES, help="JSONL table of cases with human verdicts")
    parser.add_argument("--before", default="main", help="git revision whose answers.py is 'rarl before'")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for the results")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    cases = load_cases(args.cases)
    rules, not_run, commit = scorers(args.before)
    verdicts = {name: [rule(case) for case in cases] for name, rule in rules.items()}
    result = header("scorer_agreement", load) | {
        "case_file": str(args.cases.resolve().relative_to(REPO)) if args.cases.resolve().is_relative_to(REPO)
        else str(args.cases), "before": commit, "sources": SOURCES, "verdict_rules": VERDICTS,
        "not_run": not_run, "agreement": agreement(cases, verdicts), "cases": cases, "verdicts": verdicts,
    }
    if "VLM-R1 reward" in rules:
        opens = [c for c in cases if group(c) == "open"]
        result["vlm_r1_open_full_credit"] = {
            "n": len(opens), "agree": sum((vlm_r1_reward(c) == 1.0) == (c["human"] == "correct") for c in opens)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scorer-agreement.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    (args.out / "scorer-agreement.md").write_text(markdown(result))
    print(json.dumps({k: result[k] for k in ("benchmark", "before", "agreement", "not_run")}, indent=2))
    return result


if __name__ == "__main__":
    main()
