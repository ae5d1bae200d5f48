"""Task scorers: score_completion(task, completion_text, example) -> float in [0, 1].

`example` is a raw row of the task's data as in ../shared/data (or the `raw` field of a prepared
example). Scorers never raise on model output: garbage scores 0.
"""
from __future__ import annotations

import collections
import json
import re
import string
from typing import Callable

from sdft_jax.eval.humaneval import score as score_humaneval

_ACTION = re.compile(r"Action\s*:\s*(?P<name>[^\n]*?)\s*\n\s*Action\s*Input\s*:\s*(?P<input>.*?)"
                     r"(?=\n\s*(?:Thought|Action|Observation|Final Answer)\s*:|\Z)", re.DOTALL)
_DECODER = json.JSONDecoder()


def _parse_json(text: str):
    """The first JSON value in text (models often add trailing prose); None when there is none."""
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`").lstrip("json").strip()
    for start in range(len(text)):
        if text[start] in "{[":
            try:
                return _DECODER.raw_decode(text[start:])[0]
            except json.JSONDecodeError:
                return None
    return None


def parse_actions(completion: str) -> list[tuple[str, object]] | None:
    """[(action name, parsed JSON input)]; None when an input is not valid JSON."""
    out = []
    for m in _ACTION.finditer(completion):
        value = _parse_json(m.group("input"))
        if value is None:
            return None
        out.append((m.group("name").strip(), value))
    return out


def _merge(pairs) -> tuple[collections.Counter, dict]:
    names = collections.Counter(name for name, _ in pairs)
    merged: dict = {}
    for name, value in pairs:
        if isinstance(value, dict):
            merged.setdefault(name, {}).update(value)
        else:
            merged.setdefault(name, {})["__value__"] = value
    return names, merged


def score_tooluse(completion: str, example: dict) -> float:
    golden_steps = example.get("golden_answer") or example.get("Golden_Answers")
    golden = []
    for step in golden_steps or []:
        value = _parse_json(step["Action_Input"]) if isinstance(step["Action_Input"], str) else step["Action_Input"]
        golden.append((step["Action"].strip(), {} if value is None else value))
    predicted = parse_actions(completion or "")
    if not predicted or not golden:
        return 0.0
    return float(_merge(predicted) == _merge(golden))


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)


def score_science(completion: str, example: dict) -> float:
    gold = (example.get("answerKey") or example.get("answer") or "").strip().upper()
    tags = _ANSWER_TAG.findall(completion or "")
    if not tags or not gold:
        return 0.0
    letters = re.findall(r"\b([A-Z])\b", tags[-1].strip().upper())
    return float(len(letters) >= 1 and letters[0] == gold)


def normalize(text: str) -> str:
    text = (text or "").lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_LETTER = re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*[:\-]?\s*\(?([A-J])\)?(?![a-z])", re.IGNORECASE)


def score_medical(completion: str, example: dict) -> float:
    """MCQ rows: the option letter or the answer string; open rows: the answer string."""
    completion = completion or ""
    answer = example.get("answer") or example.get("Ground-True Answer") or ""
    if answer and normalize(answer) and normalize(answer) in normalize(completion):
        return 1.0
    letter = example.get("answer_idx")
    if letter:
        found = _LETTER.findall(completion)
        return float(bool(found) and found[-1].upper() == letter.upper())
    return 0.0


_knowledge_judge: Callable[[str, dict], float] | None = None


def set_knowledge_judge(judge: Callable[[str, dict], float] | None) -> None:
    """Registers an external LLM judge (the paper used one) for `knowledge`; None restores string matching."""
    global _knowledge_judge
    _knowledge_judge = judge


def _mentions(comp: str, fact: str) -> bool:
    fact = normalize(fact)
    return bool(fact) and f" {fact} " in f" {comp} "


def _score_facts(comp: str, example: dict) -> dict[str, float]:
    """Rows that list their facts (sdft_jax/experiments/knowledge/corpus.py): strict = every `required` fact and
    no `forbidden` one; lenient = at least one required and no forbidden. With `first_of`, the first
    of those names the completion mentions must be a required one (a comparison's winner)."""
    required, forbidden = example["required"], example.get("forbidden") or []
    if any(_mentions(comp, f) for f in forbidden):
        return {"strict": 0.0, "lenient": 0.0}
    first_of = example.get("first_of")
    if first_of:
        spots = [(f" {comp} ".find(f" {normalize(n)} "), n) for n in first_of if _mentions(comp, n)]
        if not spots or min(spots)[1] not in required:
            return {"strict": 0.0, "lenient": 0.0}
    hits = [_mentions(comp, f) for f in required]
    return {"strict": float(all(hits)), "lenient": float(any(hits))}


def score_knowledge_detailed(completion: str, example: dict) -> dict[str, float]:
    """Rows with `required` facts: see _score_facts. Otherwise strict: the normalized answer appears
    verbatim; lenient: every answer word appears."""
    if example.get("required"):
        return _score_facts(normalize(completion or ""), example)
    ans, comp = normalize(example.get("answer", "")), normalize(completion or "")
    if not ans:
        return {"strict": 0.0, "lenient": 0.0}
    strict = float(f" {ans} " in f" {comp} ")
    lenient = float(all(word in comp.split() for word in ans.split()))
    return {"strict": strict, "lenient": max(strict, lenient)}


def score_knowledge(completion: str, example: dict) -> float:
    if _knowledge_judge is not None:
        return float(_knowledge_judge(completion, example))
    return score_knowledge_detailed(completion, example)["strict"]


_FINAL = re.compile(r"(?:final answer|answer)\s*(?:is|:)\s*(.+)", re.IGNORECASE)


def score_exact_match(completion: str, example: dict) -> float:
    gold = normalize(str(example.get("answer", "")))
    if not gold:
        return 0.0
    completion = completion or ""
    found = _FINAL.findall(completion)
    candidates = [completion] + found[-1:] + completion.strip().splitlines()[-1:]
    return float(any(normalize(c) == gold for c in candidates))


_FORM = str.maketrans("", "", "-. ")


def score_letters(completion: str, example: dict) -> float:
    """The demo's style world: the answer's letters in any form (case, '-', '.' or ' ' between them)."""
    gold = str(example.get("answer", "")).lower()
    return float(bool(gold) and (completion or "").strip().lower().translate(_FORM) == gold)


def score_knowledge_lenient(completion: str, example: dict) -> float:
    return score_knowledge_detailed(completion, example)["lenient"]


SCORERS: dict[str, Callable[[str, dict], float]] = {
    "tooluse": score_tooluse, "science": score_science, "medical": score_medical,
    "knowledge": score_knowledge, "knowledge_lenient": score_knowledge_lenient,
    "exact_match": score_exact_match, "demonstrations": score_exact_match, "letters": score_letters,
}


SCORERS["humaneval"] = score_humaneval


def score_completion(task: str, completion_text: str, example: dict) -> float:
    if task not in SCORERS:
        raise ValueError(f"no scorer for task {task!r}; known: {sorted(SCORERS)}")
    try:
        return float(SCORERS[task](completion_text, example))
    except (KeyError, TypeError, AttributeError, ValueError):
        return 0.0


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod
