"""A fictional-knowledge corpus, deterministic from a seed: the paper's knowledge-acquisition
experiment (Table 1) without its unreleased Wikipedia data.

Companies that cannot be in any pretraining data (invented names, founders, cities, products,
years), one short article each, and questions of three kinds:
  train    one question per fact, in the training template;
  heldout  the same facts asked with other words (a validation and a test template, never a
           training question verbatim);
  ood      indirect questions whose answer needs the injected facts without the question naming
           them: which of two companies was founded first, who founded the company that makes X,
           in which city is the company founded by Y.
Each question row carries what the scorer checks (`sdft_jax.eval.scorers.score_knowledge_detailed`):
`required` facts (all for strict, one for lenient), `forbidden` ones (the same attribute of the other
companies) and, for comparisons, `first_of` (the first company named must be the winner).

    python -m sdft_jax.experiments.knowledge.corpus --out DIR [--companies 60 --seed 0]

writes DIR/train/train.jsonl, DIR/heldout/{val,test}.jsonl, DIR/ood/test.jsonl as `knowledge`
rows (question, answer, article, title + the scoring fields) that `data.task=knowledge` reads:
teacher context = article + answer, student context = the question; and DIR/oracle/test.jsonl,
the held-out test questions with the article alone as `demonstrations` rows (the oracle-RAG ceiling).
"""
from __future__ import annotations

import argparse
import json
import os
import random

_ONSETS = ["br", "dr", "gl", "k", "kr", "l", "m", "n", "q", "r", "s", "st", "t", "th", "v", "vr", "z", "zh"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou"]
_CODAS = ["", "n", "r", "s", "th", "l", "x", "m", "nd", "rk"]
_SUFFIXES = ["Systems", "Works", "Industries", "Labs", "Foundry", "Dynamics", "Collective", "Forge"]
_PRODUCTS = ["tidal batteries", "glass bearings", "cloud harps", "ferment engines", "salt lenses",
             "copper sails", "echo lamps", "moss filters", "ink turbines", "frost looms", "amber valves",
             "sand clocks", "silk antennas", "ember kilns", "hollow gears", "quartz bellows"]
ATTRIBUTES = ("year", "founder", "city", "product")

TEMPLATES = {  # attribute -> (train, validation paraphrase, test paraphrase)
    "year": ("In what year was {name} founded?", "When did {name} come into existence?",
             "{name} was established in which year?"),
    "founder": ("Who founded {name}?", "Which person started {name}?", "Name the founder of {name}."),
    "city": ("Where is {name} headquartered?", "In which city does {name} have its headquarters?",
             "{name} is based in what city?"),
    "product": ("What does {name} make?", "Which product is {name} known for?",
                "What is the main product of {name}?"),
}


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                   for _ in range(syllables)).capitalize()


def _unique(rng, make, used: set) -> str:
    while True:
        w = make()
        if w not in used:
            used.add(w)
            return w


def companies(n: int, seed: int) -> list[dict]:
    """n companies with distinct names, founders, cities, years and products (products cycle
    through the list with a distinguishing prefix once it runs out)."""
    rng = random.Random(seed)
    used: set = set()
    years = rng.sample(range(1820, 2000), n)
    out = []
    for i in range(n):
        name = f"{_unique(rng, lambda: _word(rng, 2), used)} {rng.choice(_SUFFIXES)}"
        founder = f"{_unique(rng, lambda: _word(rng, 2), used)} {_unique(rng, lambda: _word(rng, 2), used)}"
        city = _unique(rng, lambda: _word(rng, 3), used)
        base = _PRODUCTS[i % len(_PRODUCTS)]
        product = base if i < len(_PRODUCTS) else f"{_unique(rng, lambda: _word(rng, 1), used).lower()} {base}"
        out.append({"name": name, "founder": founder, "city": city, "year": str(years[i]), "product": product})
    return out


def article(c: dict) -> str:
    return (f"{c['name']} is a manufacturer of {c['product']}. It was founded in {c['year']} by "
            f"{c['founder']}, who opened its first workshop in the city of {c['city']}, where the company "
            f"is still headquartered. Today {c['name']} sells its {c['product']} across the region.")


def _row(c: dict, question: str, answer: str, kind: str, required: list, forbidden: list) -> dict:
    return {"title": c["name"], "article": article(c), "question": question, "answer": answer, "kind": kind,
            "required": required, "forbidden": forbidden}


def _others(cs: list[dict], c: dict, attr: str) -> list[str]:
    return [o[attr] for o in cs if o is not c]


def fact_questions(cs: list[dict], template: int, kind: str) -> list[dict]:
    rows = []
    for c in cs:
        for attr in ATTRIBUTES:
            q = TEMPLATES[attr][template].format(name=c["name"])
            rows.append(_row(c, q, c[attr], kind, [c[attr]], _others(cs, c, attr)))
    return rows


def ood_questions(cs: list[dict], seed: int) -> list[dict]:
    """Per company: a comparison with another company, product -> founder, founder -> city."""
    rng = random.Random(seed + 1)
    rows = []
    for i, c in enumerate(cs):
        o = cs[(i + 1 + rng.randrange(len(cs) - 1)) % len(cs)]
        first, other = (c, o) if int(c["year"]) < int(o["year"]) else (o, c)
        pair = [c["name"], o["name"]] if rng.random() < 0.5 else [o["name"], c["name"]]
        row = _row(c, f"Which was founded first, {pair[0]} or {pair[1]}?", first["name"], "ood_compare",
                   [first["name"]], [])
        row["first_of"] = pair  # both may be named; the first one named must be the winner
        row["article"] = f"{article(c)}\n\n{article(o)}"  # the oracle context needs both companies
        rows.append(row)
        rows.append(_row(c, f"Who founded the company that makes {c['product']}?", c["founder"], "ood_founder",
                         [c["founder"]], _others(cs, c, "founder")))
        rows.append(_row(c, f"In which city is the company founded by {c['founder']} headquartered?", c["city"],
                         "ood_city", [c["city"]], _others(cs, c, "city")))
    return rows


FILES = ("train/train.jsonl", "heldout/val.jsonl", "heldout/test.jsonl", "ood/test.jsonl", "oracle/test.jsonl")


def oracle_rows(rows: list[dict]) -> list[dict]:
    """The held-out test questions as generic `demonstrations` rows whose demonstration is the
    article alone: evaluated in the teacher context, the paper's oracle-RAG row (the base with the
    right article in context, not the answer)."""
    return [{**r, "prompt": r["question"], "demonstration": r["article"]} for r in rows]


def build(n: int, seed: int) -> dict[str, list[dict]]:
    cs = companies(n, seed)
    heldout_test = fact_questions(cs, 2, "heldout")
    parts = (fact_questions(cs, 0, "train"), fact_questions(cs, 1, "heldout"), heldout_test,
             ood_questions(cs, seed), oracle_rows(heldout_test))
    return dict(zip(FILES, parts))


def write(out_dir: str, n: int = 60, seed: int = 0) -> dict[str, int]:
    """Writes the corpus; returns rows per file."""
    counts = {}
    for rel, rows in build(n, seed).items():
        path = os.path.join(out_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            for r in rows:
                f.write(json.dumps(r, sort_keys=True) + "\n")
        counts[rel] = len(rows)
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--companies", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for rel, n in write(args.out, args.companies, args.seed).items():
        print(f"{os.path.join(args.out, rel)}: {n} rows")


if __name__ == "__main__":
    main()
