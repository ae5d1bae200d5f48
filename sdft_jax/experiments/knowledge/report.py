"""docs/EXPERIMENTS.md's knowledge results, from a compare run's results.json (configs/knowledge.py):

    python -m sdft_jax.experiments.knowledge.report runs/knowledge --update docs/EXPERIMENTS.md --figure docs/knowledge.png

Prints (or writes into the doc's results block) the test table, each method's sweep, the
wall-clock, and the paper's Table 1 next to ours.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from sdft_jax.programs import compare
from sdft_jax.runtime.doc_block import emit, link

# The paper's Table 1 (Qwen2.5-7B-Instruct; strict, lenient, OOD accuracy in %).
PAPER = {"base": (0, 0, 0), "oracle RAG": (91, 100, 100), "CPT": (9, 37, 7), "SFT": (80, 95, 80), "SDFT": (89, 100, 98)}
COLUMNS = ("heldout", "heldout/knowledge_lenient", "ood")


def paper_rows(results: dict) -> dict:
    """Our scores under the paper's Table 1 row names (base, oracle RAG, each method upper-cased)."""
    return {"base": results["base"], "oracle RAG": {"heldout": results["base"]["oracle_rag"],
                                                    "heldout/knowledge_lenient": results["base"]["oracle_rag/knowledge_lenient"]},
            **{m.upper(): r["test"] for m, r in results["methods"].items()}}


def paper_table(results: dict) -> str:
    ours = paper_rows(results)
    model = os.path.basename(results["model"].rstrip("/"))
    lines = [f"| row | paper strict | paper lenient | paper OOD | {model} strict | lenient | OOD (strict) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row, paper in PAPER.items():
        mine = ours.get(row, {})
        cells = [f"{100 * mine[c]:.1f}" if c in mine else "n/a" for c in COLUMNS]
        lines.append(f"| {row} | " + " | ".join(map(str, paper)) + " | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def wall_clock(results: dict) -> str:
    parts = [f"base evaluation {results['base'].get('eval_seconds', 0) / 60:.1f} min"]
    for method, m in results["methods"].items():
        sweep = sum(r["seconds"] or 0 for r in m["sweep"])
        parts.append(f"{method.upper()} sweep ({len(m['sweep'])} points, training + validation) {sweep / 60:.1f} min, "
                     f"test evaluation {m['test'].get('eval_seconds', 0) / 60:.1f} min")
    return "Wall-clock: " + "; ".join(parts) + "."


def markdown(results: dict, figure: str = "") -> str:
    lines = [compare.markdown(results), "", wall_clock(results)]
    if results.get("machine"):
        lines += ["", f"Machine: {results['machine']}."]
    if figure:
        lines += ["", f"![knowledge results]({figure})"]
    lines += ["", "Against the paper's Table 1 (percent; the paper's OOD is one accuracy, ours is the strict one):", "",
              paper_table(results)]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdft_jax.experiments.knowledge.report", description=__doc__.splitlines()[0])
    parser.add_argument("workdir", help="the compare run's folder (holds results.json)")
    parser.add_argument("--update", default="", help="a markdown file whose results block is replaced")
    parser.add_argument("--figure", default="", help="write the bar plot (PNG) here")
    args = parser.parse_args(argv)
    path = os.path.join(args.workdir, "results.json")
    if not os.path.isfile(path):
        print(f"error: {path}: no such file (run configs/knowledge.py first)", file=sys.stderr)
        return 1
    results = json.load(open(path))
    if args.figure:
        compare.plot(results, args.figure)
    text = markdown(results, link(args.figure, args.update))
    emit(text, args.update)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
