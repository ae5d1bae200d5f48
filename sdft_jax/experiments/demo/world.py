"""The demo's procedurally generated world: strings over a small alphabet, three prior skills the
base model is pretrained on, and new tasks defined by hidden letter-substitution rules.

User turns look like `rev:cabd` (skill name, colon, word) and are answered with a word (`dbac`).
A new task has an unseen two-letter upper-case name and a hidden rule: a random permutation of
the alphabet applied letter by letter (`QX:cabd` -> `feac`). The student cannot know the rule; the
teacher sees the demonstration (`{x}|{c}`: the question, a bar, the expert answer) and, having
been pretrained on such episodes for thousands of random rules, uses it. Everything is a pure function of the seed.

Two worlds (`configs/demo.py:world=...`):
  substitution  the answer is unique and the demonstration IS that answer: SFT and SDFT must
                converge to the same policy (the documented negative control).
  style         an answer's CONTENT is fixed by the rule, its FORM is free (STYLES: `feac`, `FEAC`,
                `f-e-a-c`, `f.e.a.c`, `f e a c`; the `letters` scorer accepts any). The base always
                answers in its own form (plain) and was pretrained on in-context episodes whose
                example is in a random form; the new tasks' expert demonstrations all use one form
                the base never produces (dash), as GPT-written demonstrations are for a 7B model.
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

ALPHABET = "abcdef"
MIN_LEN, MAX_LEN = 3, 5
MAX_RESPONSE_TOKENS = 16  # rollouts: a new task's longest form (5 letters with separators) + end of turn is 10
# Evaluation: the longest CORRECT form of any task or prior skill (dup of 5 letters with separators,
# 19 characters) + end of turn; a model that drifts to a separated form must not be scored wrong
# for being cut (tests/test_demo.py checks this bound against longest_correct_tokens()).
EVAL_MAX_NEW_TOKENS = 24
TEACHER_TEMPLATE = "{x}|{c}"  # the demo's compact teacher context (the paper's, shortened)
# A compact chat template: <|im_start|>u:PROMPT<|im_end|><|im_start|>a:ANSWER<|im_end|>
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'][0] + ':' + m['content'] + '<|im_end|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>a:' }}{% endif %}")


def _shift(word: str) -> str:
    return "".join(ALPHABET[(ALPHABET.index(ch) + 1) % len(ALPHABET)] for ch in word)


PRIOR_SKILLS = {
    "rev": lambda w: w[::-1],                       # reverse the word
    "dup": lambda w: "".join(ch * 2 for ch in w),   # double every letter
    "cyc": _shift,                                  # next letter, cyclically (a fixed substitution)
}


@dataclasses.dataclass(frozen=True)
class Rule:
    """A new task: a name never used by a prior skill and a hidden permutation of the alphabet."""
    name: str
    table: str  # table[i] is the image of ALPHABET[i]

    def apply(self, word: str) -> str:
        return "".join(self.table[ALPHABET.index(ch)] for ch in word)


def random_word(rng: np.random.Generator) -> str:
    n = int(rng.integers(MIN_LEN, MAX_LEN + 1))
    return "".join(rng.choice(list(ALPHABET), size=n))


def random_rule(rng: np.random.Generator, name: str) -> Rule:
    return Rule(name, "".join(rng.permutation(list(ALPHABET))))


def random_name(rng: np.random.Generator) -> str:
    return "".join(rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), size=2))


def new_tasks(seed: int, count: int) -> list[Rule]:
    """The hidden rules of the continual experiment (distinct names, non-identity tables)."""
    rng = np.random.default_rng([seed, 7])
    rules, names = [], set()
    while len(rules) < count:
        name = random_name(rng)
        rule = random_rule(rng, name)
        if name not in names and rule.table != ALPHABET:
            rules.append(rule)
            names.add(name)
    return rules


def row(prompt_name: str, word: str, answer: str, **extra) -> dict:
    return {"prompt": f"{prompt_name}:{word}", "demonstration": answer, "answer": answer, **extra}


def task_rows(rule: Rule, n: int, rng: np.random.Generator, exclude: set[str] = frozenset()) -> list[dict]:
    """n distinct words (none in `exclude`) under the rule, with their answers as demonstrations."""
    words: list[str] = []
    seen = set(exclude)
    while len(words) < n:
        w = random_word(rng)
        if w not in seen:
            seen.add(w)
            words.append(w)
    return [row(rule.name, w, rule.apply(w), id=f"{rule.name}-{i}") for i, w in enumerate(words)]


def skill_rows(skill: str, n: int, rng: np.random.Generator) -> list[dict]:
    fn = PRIOR_SKILLS[skill]
    return [row(skill, w, fn(w), id=f"{skill}-{i}") for i, w in enumerate(random_word(rng) for _ in range(n))]


WORLDS = ("style", "substitution")
STYLES = {"plain": lambda a: a, "upper": str.upper, "dash": "-".join, "dot": ".".join, "space": " ".join}
EXPERT_STYLE = "dash"  # the base's own form is "plain": every pretraining target


def styled(answer: str, style: str) -> str:
    return STYLES[style](answer)


def longest_correct_tokens() -> int:
    """Tokens (bytes) + end of turn of the longest answer the `letters` scorer accepts for any word:
    the longest word under every prior skill and a permutation, in every form."""
    word = ALPHABET[:MAX_LEN]
    answers = [fn(word) for fn in PRIOR_SKILLS.values()] + [word]
    return max(len(styled(a, s)) for a in answers for s in STYLES) + 1


def scorer(world_name: str) -> str:
    """The accuracy scorer of a world: the exact answer, or its letters in any form."""
    return "letters" if world_name == "style" else "exact_match"


PRETRAINING_MIX = {"prior_skill": 0.5, "in_context": 0.5}
IN_CONTEXT_PRIOR_SKILL = 0.2  # share of in-context episodes that show a prior skill, not a random rule


def pretraining_rows(n: int, seed: int, world_name: str = "substitution") -> list[dict]:
    """The base model's corpus (PRETRAINING_MIX): prior skills in the student's format, and
    in-context episodes in the teacher's format (`{x}|{c}`) of fresh random rules for random names
    (and of the prior skills). The new tasks' rules come from another random stream, so they never
    appear here (a random name can coincide with a task's name; its rule then differs). In the
    style world the example `c` is in a random form and the target stays plain (the base's own)."""
    rng = np.random.default_rng([seed, 1])
    skills = sorted(PRIOR_SKILLS)
    out = []
    for i in range(n):
        word = random_word(rng)
        in_context = rng.random() < PRETRAINING_MIX["in_context"]
        if not in_context or rng.random() < IN_CONTEXT_PRIOR_SKILL:
            name = skills[int(rng.integers(len(skills)))]
            r = row(name, word, PRIOR_SKILLS[name](word), id=f"pre-{i}")
        else:
            rule = random_rule(rng, random_name(rng))
            r = row(rule.name, word, rule.apply(word), id=f"pre-{i}")
        if in_context:
            example = r["demonstration"]
            if world_name == "style":
                example = styled(example, sorted(STYLES)[int(rng.integers(len(STYLES)))])
            r["prompt"] = TEACHER_TEMPLATE.replace("{x}", r["prompt"]).replace("{c}", example)
        out.append(r)
    return out


def write_jsonl(path: str, rows: list[dict]) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".partial", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(path + ".partial", path)
    return path


def write_task_folders(root: str, seed: int, count: int, train: int, test: int,
                       world_name: str = "substitution") -> list[tuple[Rule, str]]:
    """One folder per new task with train.jsonl / test.jsonl (disjoint words), and one per prior
    skill with test.jsonl. Returns [(rule, folder)] for the new tasks. In the style world the
    demonstrations are in the expert's form (`answer` stays the plain letters the scorer checks),
    and plain_form_folder(folder) holds the same rows with plain-form demonstrations (the base's own
    form: the `@plain` demo arms)."""
    rng = np.random.default_rng([seed, 11])
    out = []
    for rule in new_tasks(seed, count):
        rows = task_rows(rule, train + test, rng)
        folder = os.path.join(root, f"task_{rule.name}")
        if world_name == "style":
            plain = plain_form_folder(folder)
            write_jsonl(os.path.join(plain, "train.jsonl"), rows[:train])
            write_jsonl(os.path.join(plain, "test.jsonl"), rows[train:])
            rows = [{**r, "demonstration": styled(r["answer"], EXPERT_STYLE)} for r in rows]
        write_jsonl(os.path.join(folder, "train.jsonl"), rows[:train])
        write_jsonl(os.path.join(folder, "test.jsonl"), rows[train:])
        out.append((rule, folder))
    for skill in sorted(PRIOR_SKILLS):
        write_jsonl(os.path.join(root, f"prior_{skill}", "test.jsonl"), skill_rows(skill, test, rng))
    return out


def plain_form_folder(task_folder: str) -> str:
    """The style world's copy of a task whose demonstrations are in the base's own (plain) form."""
    return task_folder + "_plain"


def tokenizer(save_dir: str | None = None):
    """The byte-level tokenizer (sdft_jax.model.byte_tokenizer) with the compact chat template."""
    # Here, not at the top: configs/demo.py imports this module, and a config must parse fast.
    from sdft_jax.model.byte_tokenizer import byte_tokenizer
    return byte_tokenizer(save_dir, chat_template=CHAT_TEMPLATE)
