"""The knowledge experiment's teacher, measured without training.

For one model of configs/knowledge.py: the held-out test questions under (a) no context, (b) the
article only (the oracle-RAG row), (c) the exact SDFT teacher context (title + article + "Answer:
<fact>" inside the run's teacher template), greedy, strict and lenient; and, on the training
questions, where the required fact starts in the student's own completions (temperature 1 as in
SDFT's rollouts, and greedy) and in the teacher's (greedy, teacher context), in tokens: inside the
first `loss.skip_first_tokens`, after, or absent; for year questions also where any year starts
(the answer slot, right or wrong: the base does not know the facts).

    python -m sdft_jax.experiments.knowledge.diagnose --model smollm2_135m --out docs/results/knowledge_teacher_smollm2_135m.json
    python -m sdft_jax.experiments.knowledge.diagnose --report docs/results/knowledge_teacher_*.json --update docs/EXPERIMENTS.md
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time

from configs import knowledge as knowledge_config
from sdft_jax.data import prepare
from sdft_jax.data.prompts import named_template
from sdft_jax.eval.generation import evaluate
from sdft_jax.model import load_pretrained
from sdft_jax.runtime.doc_block import emit

SCORERS = ("knowledge_lenient",)
_YEAR = re.compile(r"\b\d{4}\b")


def _rows(task: str, path: str, split: str, data_dir: str, limit: int) -> list[dict]:
    source = prepare(task, path, data_dir)[split]
    rows = sorted((source[i] for i in range(len(source))), key=lambda e: e["id"])  # storage order is shuffled
    return rows[:limit] if limit else rows


def fact_position(tokenizer, completion: str, facts: list[str]) -> int | None:
    """Token index (in the completion re-tokenized) where the first required fact found starts; None if absent."""
    low = completion.lower()
    starts = [low.find(f.lower()) for f in facts if f and low.find(f.lower()) >= 0]
    if not starts:
        return None
    return len(tokenizer(completion[:min(starts)], add_special_tokens=False).input_ids)


def year_slot(tokenizer, completion: str) -> int | None:
    """Token index where the completion's first 4-digit number (its answer to a year question) starts."""
    m = _YEAR.search(completion)
    return None if m is None else len(tokenizer(completion[:m.start()], add_special_tokens=False).input_ids)


def _split(where: list, skip: int) -> dict:
    n = max(len(where), 1)
    return {"n": len(where), "within_skipped": sum(w is not None and w < skip for w in where) / n,
            "after_skipped": sum(w is not None and w >= skip for w in where) / n,
            "absent": sum(w is None for w in where) / n, "positions": where}


def _positions(model, rows, template: str, skip: int, max_prompt: int, temperature: float, seed: int,
               teacher: bool) -> dict:
    """Where the required fact starts (and, for year questions, where any year starts: the answer
    slot, even when the answer is wrong) in completions of the training questions."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "completions.jsonl")
        metrics = evaluate(model, rows, "knowledge", with_demonstration=teacher, template=template,
                           max_new_tokens=64, max_prompt=max_prompt, temperature=temperature, seed=seed,
                           out_jsonl=out, progress=True)
        records = [json.loads(line) for line in open(out)]
    raw = {r["id"]: json.loads(r["raw"]) for r in rows}
    tok = model.tokenizer
    fact = [fact_position(tok, rec["completion"], raw[rec["id"]]["required"]) for rec in records]
    years = [year_slot(tok, rec["completion"]) for rec in records if raw[rec["id"]]["answer"].isdigit()]
    return {"context": "teacher" if teacher else "student", "temperature": temperature, "skip_first_tokens": skip,
            "skipped_too_long": metrics["skipped_too_long"],
            "fact": _split(fact, skip), "year_slot": _split(years, skip),
            "examples": [{"question": raw[rec["id"]]["question"], "completion": rec["completion"]}
                         for rec in records[:8]]}


def diagnose(model_name: str, examples: int = 0, position_examples: int = 0) -> dict:
    config = knowledge_config.get_config(f"model={model_name}")
    root = os.path.dirname(config.data.path)
    data_dir = os.path.join(tempfile.gettempdir(), "sdft_knowledge_diagnose_tfds")
    template = named_template(config.data.teacher_template)
    max_prompt = config.data.max_teacher_prompt
    model = load_pretrained(config.model.path, dtype=config.model.dtype)
    heldout = _rows("knowledge", os.path.join(root, "heldout"), "test", data_dir, examples)
    oracle = _rows("demonstrations", os.path.join(root, "oracle"), "test", data_dir, examples)
    train = _rows("knowledge", os.path.join(root, "train"), "train", data_dir, position_examples or examples)
    started = time.time()
    kw = dict(template=template, max_new_tokens=config.sampling.max_new_tokens, max_prompt=max_prompt,
              also_scorers=SCORERS, progress=True)
    contexts = {
        "no_context": evaluate(model, heldout, "knowledge", **kw),
        "article_only": evaluate(model, oracle, "knowledge", with_demonstration=True, **kw),
        "teacher_context": evaluate(model, heldout, "knowledge", with_demonstration=True, **kw),
    }
    skip = config.loss.skip_first_tokens
    first_tokens = {name: _positions(model, train, template, skip, max_prompt, t, config.seed, teacher)
                    for name, t, teacher in (("student_sampled_t1", 1.0, False), ("student_greedy", 0.0, False),
                                             ("teacher_greedy", 0.0, True))}
    return {"model": model_name, "model_path": config.model.path, "template": config.data.teacher_template,
            "max_new_tokens": config.sampling.max_new_tokens, "corpus": root,
            "contexts": {k: {"strict": v["accuracy"], "lenient": v["accuracy:knowledge_lenient"], "n": v["n"],
                             "skipped_too_long": v["skipped_too_long"]} for k, v in contexts.items()},
            "first_tokens": first_tokens, "seconds": round(time.time() - started, 1)}


def report(results: list[dict]) -> str:
    """Markdown: accuracy per context, and where facts and answer slots start, per model."""
    names = [r["model"] for r in results]
    lines = ["| context (120 held-out test questions, greedy) | " + " | ".join(f"{n} strict | lenient" for n in names)
             + " |", "|---|" + "---:|---:|" * len(names)]
    for ctx, label in (("no_context", "(a) no context"), ("article_only", "(b) article only (oracle RAG)"),
                       ("teacher_context", "(c) the SDFT teacher context (article + answer)")):
        cells = [f"{r['contexts'][ctx]['strict']:.3f} | {r['contexts'][ctx]['lenient']:.3f}" for r in results]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    skip = results[0]["first_tokens"]["student_greedy"]["skip_first_tokens"]
    lines += ["", f"| where it starts, training questions (token < {skip} = inside `loss.skip_first_tokens`) | "
              + " | ".join(f"{n} < {skip} | >= {skip} | absent" for n in names) + " |",
              "|---|" + "---:|---:|---:|" * len(names)]
    for measure, what, label in (("student_sampled_t1", "year_slot", "student, temperature 1: any year (year questions)"),
                                 ("student_greedy", "year_slot", "student, greedy: any year (year questions)"),
                                 ("student_greedy", "fact", "student, greedy: the true fact"),
                                 ("teacher_greedy", "fact", "teacher context, greedy: the true fact"),
                                 ("teacher_greedy", "year_slot", "teacher context, greedy: any year (year questions)")):
        cells = []
        for r in results:
            m = r["first_tokens"][measure][what]
            cells.append(f"{m['within_skipped']:.3f} | {m['after_skipped']:.3f} | {m['absent']:.3f} (n={m['n']})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a configs/knowledge.py model: smollm2_135m, qwen2_5_0_5b, tiny")
    ap.add_argument("--out", help="results JSON")
    ap.add_argument("--examples", type=int, default=0, help="rows per split (0 = all)")
    ap.add_argument("--position_examples", type=int, default=0,
                    help="training questions for the first-token measures (0 = as --examples)")
    ap.add_argument("--report", nargs="+", help="results JSONs: print their tables instead of running")
    ap.add_argument("--update", default="", help="with --report: write into this doc's `teacher` results block")
    args = ap.parse_args(argv)
    if args.report:
        emit(report([json.load(open(p)) for p in args.report]), args.update, name="teacher")
        return 0
    if not (args.model and args.out):
        ap.error("--model and --out are required (or --report)")
    result = diagnose(args.model, args.examples, args.position_examples)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    summary = {k: v for k, v in result["contexts"].items()}
    print(json.dumps({"model": args.model, "contexts": summary,
                      **{f"{k}/{what}": {m: v[what][m] for m in ("within_skipped", "after_skipped", "absent")}
                         for k, v in result["first_tokens"].items() for what in ("fact", "year_slot")}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
