"""The knowledge experiment's second round (docs/EXPERIMENTS.md, steps 2 and 3), rendered from the
JSON under docs/results/: each prediction next to what came out, with 95% Wilson intervals over the
questions, and the paper's Table 1 and scale study beside ours.

    # one compare run's results.json, with its question counts and each chosen point's recipe:
    python -m sdft_jax.experiments.knowledge.round2 collect $SDFT_JAX_CACHE/runs/knowledge_r2_sdft_skip0 \\
        --out docs/results/knowledge_r2_sdft_skip0.json
    # the doc's `round2-step2` / `round2-step3` blocks from the files present:
    python -m sdft_jax.experiments.knowledge.round2 render --results docs/results --update docs/EXPERIMENTS.md

(the module's RUNS names each file's run and command).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from configs import knowledge as knowledge_config
from sdft_jax.experiments.knowledge.report import PAPER, paper_rows, wall_clock
from sdft_jax.experiments.stats import wilson
from sdft_jax.programs import compare
from sdft_jax.programs.sweep import point_name
from sdft_jax.runtime.doc_block import emit

# file under docs/results/ -> the step it belongs to and the config argument of its run.
RUNS = {
    "knowledge_r2_sdft_skip0.json": ("step2", "model=smollm2_135m,method=sdft"),  # --config.loss.skip_first_tokens=0
    # the 3 x 3 grid the committed JSON holds (amendment 1's 4 x 4 rerun was cut; collecting it needs --arg)
    "knowledge_r2_sft_grid.json": ("step2", "model=smollm2_135m,method=sft,lrs=6e-5/2e-4/6e-4,epoch_grid=2/4/8"),
    # amendment 2: SDFT at SFT's budget (--config.loss.skip_first_tokens=0); optional in step 2's block
    "knowledge_r2_sdft_long.json": ("step2", "model=smollm2_135m,method=sdft,lrs=2e-4/6e-4,epoch_grid=8"),
    "knowledge_r2_qwen_lora.json": ("step3", "model=qwen2_5_0_5b"),  # its defaults: configs/knowledge.py MODEL_DEFAULTS
    # amendment 3: every method's grid extended, same folder; optional in step 3's block
    "knowledge_r2_qwen_lora_grid6.json": ("step3", "model=qwen2_5_0_5b,lrs=1e-4/5e-4/2e-3,epoch_grid=4/8"),
    # amendment 4: SDFT on step 3's grid with --config.loss.skip_first_tokens=0; optional in step 3's block
    "knowledge_r2_qwen_sdft_skip0.json": ("step3", "model=qwen2_5_0_5b,method=sdft"),
}
AMENDMENTS = ("knowledge_r2_sdft_long.json", "knowledge_r2_qwen_lora_grid6.json", "knowledge_r2_qwen_sdft_skip0.json")
# Round 1's SFT at its chosen point (lr 2e-4 x 4 epochs), the bar P5 was registered against; round 1's
# results.json was not kept, these are its doc block's numbers.
ROUND1_SFT = {"heldout": 0.175, "drift": 1.902}
# The paper's Figure 5 (left): SDFT minus SFT on Science Q&A, points, per Qwen2.5 size.
PAPER_SCALE = {"3B": -3.3, "7B": 4.0, "14B": 6.9}
INTERVALS = ("With 95% Wilson intervals over the questions (they treat the questions as independent, though each "
             "company's questions share its article, and they leave out training-seed and selection variance: "
             "one seed, the best of the grid on the validation questions):")
EPS = 1e-9  # scores are means over questions: a score or gap exactly on a bar must read as on it
RECIPE = ("loss.skip_first_tokens", "model.lora.rank", "model.lora.base_dtype", "batch.prompts_per_step",
          "sampling.max_new_tokens", "optim.lr", "steps")


def _get(config: dict, dotted: str):
    for key in dotted.split("."):
        config = config.get(key, {}) if isinstance(config, dict) else {}
    return None if config == {} else config


def _loss_ends(metrics: str, k: int = 5) -> list[float] | None:
    """The training loss (SDFT: the divergence to the teacher; SFT: the NLL), mean of the first and of the last k steps."""
    if not os.path.isfile(metrics):
        return None
    loss = [r["loss"] for r in map(json.loads, open(metrics)) if "loss" in r]
    return [sum(loss[:k]) / len(loss[:k]), sum(loss[-k:]) / len(loss[-k:])] if loss else None


def collect(workdir: str, arg: str) -> dict:
    """A compare run's results.json, plus the questions per evaluator (from the config that ran it) and
    each method's chosen-point recipe (from that point's own config.json)."""
    results = json.load(open(os.path.join(workdir, "results.json")))
    config = knowledge_config.get_config(arg)
    examples = {"val": config.evals.val.examples}
    examples.update({name: ev.examples for name, ev in config.compare.evals.items() if "examples" in ev
                     and ev.type in ("accuracy", "humaneval")})
    for method, m in results["methods"].items():
        for row in m["sweep"]:
            row["loss_first_last"] = _loss_ends(os.path.join(workdir, method, point_name(row["point"]), "metrics.jsonl"))
        point = os.path.join(workdir, method, point_name(m["chosen"]), "config.json")
        m["recipe"] = {k: _get(json.load(open(point)), k) for k in RECIPE}
        if not m["recipe"]["model.lora.rank"]:  # full fine-tuning: the adapters' base dtype does not apply
            del m["recipe"]["model.lora.base_dtype"]
    return {"arg": arg, "examples": examples, **results, "model": os.path.basename(results["model"].rstrip("/"))}


def _interval(results: dict, row: dict, column: str) -> list[float]:
    """The 95% Wilson interval of an accuracy over its evaluator's questions (a lenient column: the strict one's)."""
    n = results["examples"][column.split("/")[0]]
    return wilson(round(row[column] * n), n)


def _acc(results: dict, row: dict, column: str) -> str:
    lo, hi = _interval(results, row, column)
    return f"{row[column]:.3f} [{lo:.2f}, {hi:.2f}]"


def interval_table(results: dict, rows: list[tuple[str, dict]]) -> str:
    """Test accuracies with 95% Wilson intervals (n questions per column), drift as measured."""
    acc = [c for c in ("heldout", "ood", "oracle_rag", "humaneval") if c in results["columns"]]
    head = [f"{c} (n={results['examples'][c]})" for c in acc]
    lines = ["| model | " + " | ".join(head) + " | drift |", "|---" * (len(acc) + 2) + "|"]
    for label, row in rows:
        lines.append(f"| {label} | " + " | ".join(_acc(results, row, c) for c in acc) + f" | {row['drift']:.3f} |")
    return "\n".join(lines)


def _chosen_label(method: str, m: dict) -> str:
    return f"{method.upper()} ({point_name(m['chosen'])})"


def _separated(a: list[float], b: list[float]) -> bool:
    return a[1] < b[0] or b[1] < a[0]


def _edges(m: dict) -> list[str]:
    """Where a method's chosen point sits on its grid's edge: 'largest optim.lr', ... (an axis with one value has none)."""
    return [f"{'largest' if v == max(vals) else 'smallest'} {k}" for k, v in m["chosen"].items()
            for vals in [{r["point"][k] for r in m["sweep"]}] if len(vals) > 1 and v in (min(vals), max(vals))]


def _same_experiment(runs: list[dict], step: str) -> None:
    first = runs[0]
    if any(_scores(r["base"]) != _scores(first["base"]) or r["examples"] != first["examples"] for r in runs):
        raise ValueError(f"{step}'s runs evaluated different bases or questions: not one experiment")


def outcomes_step2(skip0: dict | None, grid: dict | None) -> list[str]:
    lines = []
    if skip0:
        m = skip0["methods"]["sdft"]
        done = [r["validation"]["val"] for r in m["sweep"] if r["status"] == "done"]
        holds = len(done) == len(m["sweep"]) and max(done) <= 0.05 + EPS and m["test"]["heldout"] <= 0.05 + EPS
        verdict = "held" if holds else "incomplete" if len(done) < len(m["sweep"]) else "did not hold"
        lines.append(f"- **P4 {verdict}.** SDFT with `loss.skip_first_tokens="
                     f"{m['recipe']['loss.skip_first_tokens']}`: best validation strict over its {len(done)} finished "
                     f"points (of {len(m['sweep'])}) {max(done, default=float('nan')):.3f} (bar <= 0.05); test strict at "
                     f"the chosen point {_acc(skip0, m['test'], 'heldout')} (bar <= 0.05).")
    if grid:
        m = grid["methods"]["sft"]
        edges = _edges(m)
        test, drift = m["test"]["heldout"], m["test"]["drift"]
        holds = test >= ROUND1_SFT["heldout"] - EPS and drift >= ROUND1_SFT["drift"]
        where = "inside the grid on every axis" if not edges else f"at the grid's edge ({', '.join(edges)})"
        provisional = ", provisionally: the choice is at the grid's edge" if any("largest" in e for e in edges) else ""
        lines.append(f"- **P5 {'held' if holds else 'did not hold'}{provisional}.** SFT's extended grid chose "
                     f"{point_name(m['chosen'])}, {where}; test strict {_acc(grid, m['test'], 'heldout')} "
                     f"(bar >= {ROUND1_SFT['heldout']}), drift {drift:.3f} (bar >= {ROUND1_SFT['drift']}).")
    return lines


def outcome_sdft_still_zero(run: dict, label: str, where: str, held_max: float, bar: str, signal: str) -> str:
    """An amendment's SDFT run against its bar: validation strict <= held_max at every point holds; >= 0.10 at
    any point is the named signal (`signal`); in between does not hold."""
    m = run["methods"]["sdft"]
    done = {point_name(r["point"]): r["validation"]["val"] for r in m["sweep"] if r["status"] == "done"}
    best = max(done.values(), default=0.0)
    verdict = ("incomplete" if len(done) < len(m["sweep"]) else "held" if best <= held_max + EPS else
               f"did not hold: {signal}" if best >= 0.10 - EPS else "did not hold")
    return (f"- **{label} {verdict}.** SDFT with `loss.skip_first_tokens={m['recipe']['loss.skip_first_tokens']}` "
            f"{where}, validation strict: " + "; ".join(f"{p} {v:.3f}" for p, v in done.items())
            + f" ({bar}); test strict at its chosen point {_acc(run, m['test'], 'heldout')}.")


def outcome_p4b(long: dict) -> str:
    """Amendment 2: SDFT at SFT's budget stays at or under 0.05 on validation at both points."""
    return outcome_sdft_still_zero(long, "P4b", "at SFT's budget", 0.05, "bar <= 0.05 at both",
                                   "SDFT's zero in step 2 was its budget")


def outcome_p6b(skip0: dict) -> str:
    """Amendment 4: Qwen's SDFT with no loss skip stays at or under 1 of 30 on validation at both points."""
    return outcome_sdft_still_zero(skip0, "P6b", "on step 3's grid", 1 / 30, "bar <= 1 of 30 at both",
                                   "the loss skip hid the signal at 0.5B")


def outcomes_step3(q: dict, tag: str = "") -> list[str]:
    """P6-P9 at the run's chosen points; `tag` names a rerun of the bars (amendment 3) after each label."""
    t = {m: r["test"] for m, r in q["methods"].items()}
    ci = {m: _interval(q, t[m], "heldout") for m in t}
    lines = []
    if "sdft" in t:
        lines.append(f"- **P6{tag} {'held' if t['sdft']['heldout'] >= 0.10 - EPS else 'did not hold'}.** SDFT's test strict "
                     f"{_acc(q, t['sdft'], 'heldout')} (bar >= 0.10).")
    if {"sdft", "sft"} <= set(t):
        higher = t["sft"]["heldout"] > t["sdft"]["heldout"]
        sep = _separated(ci["sft"], ci["sdft"])
        lines.append(f"- **P7{tag} {'held' if higher and sep else 'did not hold' if not higher else 'not separated'}.** "
                     f"SFT {_acc(q, t['sft'], 'heldout')} vs SDFT {_acc(q, t['sdft'], 'heldout')}"
                     + ("" if sep else ": the intervals overlap, so no difference is claimed") + ".")
        # HumanEval is an accuracy, so a smaller drop is claimed only where SDFT's and SFT's intervals separate
        # (drift has no interval: one seed).
        base_he = q["base"].get("humaneval")
        drops = {m: base_he - t[m]["humaneval"] for m in ("sdft", "sft")} if base_he is not None else {}
        he_sep = not drops or _separated(_interval(q, t["sdft"], "humaneval"), _interval(q, t["sft"], "humaneval"))
        less = t["sdft"]["drift"] < t["sft"]["drift"] and (not drops or drops["sdft"] < drops["sft"])
        he = (f"; HumanEval drop from the base {base_he:.3f}: SDFT {drops['sdft']:+.3f}, SFT {drops['sft']:+.3f} "
              f"(n={q['examples']['humaneval']}: one problem is {1 / q['examples']['humaneval']:.2f}"
              + ("" if he_sep else "; the HumanEval intervals overlap, so no difference is claimed") + ")" if drops else "")
        verdict = "held" if less and he_sep else "not separated" if less else "did not hold"
        lines.append(f"- **P8{tag} {verdict}.** Drift (base {q['base']['drift']:.3f}): SDFT "
                     f"{t['sdft']['drift']:.3f}, SFT {t['sft']['drift']:.3f}{he}.")
    if {"sdft", "offline"} <= set(t):
        gap = t["offline"]["heldout"] - t["sdft"]["heldout"]
        holds = abs(gap) <= 0.05 + EPS and t["offline"]["drift"] > t["sdft"]["drift"]
        lines.append(f"- **P9{tag} {'held' if holds else 'did not hold'}.** Offline minus SDFT, test strict {gap:+.3f} (bar: "
                     f"|gap| <= 0.05); drift offline {t['offline']['drift']:.3f} vs SDFT {t['sdft']['drift']:.3f} "
                     f"(predicted: offline higher).")
    return lines


def side_by_side(step2: dict, step3: dict | None) -> str:
    """The paper's Table 1 (Qwen2.5-7B, full fine-tuning) and its scale study next to our sizes, in percent."""
    ours = [("SmolLM2-135M, full (step 2)", step2)] + ([("Qwen2.5-Coder-0.5B, LoRA 16 (step 3)", step3)] if step3 else [])
    lines = ["| row | paper 7B strict / lenient / OOD | " + " | ".join(f"{name} strict / lenient / OOD" for name, _ in ours)
             + " |", "|---" * (2 + len(ours)) + "|"]
    for row, paper in PAPER.items():
        cells = []
        for _, rows in ours:
            r = rows.get(row, {})
            cells.append(" / ".join(f"{100 * r[c]:.1f}" if c in r else "n/a"
                                    for c in ("heldout", "heldout/knowledge_lenient", "ood")))
        lines.append(f"| {row} | {' / '.join(map(str, paper))} | " + " | ".join(cells) + " |")
    gaps = [f"{size} {gap:+.1f}" for size, gap in PAPER_SCALE.items()]
    ours_gap = [f"{name.split(',')[0]} {100 * (rows['SDFT']['heldout'] - rows['SFT']['heldout']):+.1f}"
                for name, rows in ours if "SDFT" in rows and "SFT" in rows]
    lines += ["", f"SDFT minus SFT, points: the paper's scale study (Science Q&A, Qwen2.5) {', '.join(gaps)}; "
                  f"ours (knowledge, held-out strict) {', '.join(ours_gap)}."]
    return "\n".join(lines)


def _scores(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "eval_seconds"}


def step2_markdown(skip0: dict, grid: dict, long: dict | None = None) -> str:
    runs = [skip0, grid] + ([long] if long else [])
    _same_experiment(runs, "step 2")
    merged = {**skip0, "methods": {**skip0["methods"], **grid["methods"]}}
    rows = [("base", skip0["base"])] + [(_chosen_label(m, r), r["test"]) for m, r in merged["methods"].items()]
    grids = "; ".join(f"{m.upper()} {' x '.join(run['sweep'])} ({len(run['methods'][m]['sweep'])} points)"
                      for run in runs for m in run["methods"])
    extra = []
    if long:  # amendment 2: its own table, so the registered choice on step 2's grid stays as it was
        rows.append((f"SDFT at SFT's budget: {_chosen_label('sdft', long['methods']['sdft'])}", long["methods"]["sdft"]["test"]))
        extra = ["Amendment 2, SDFT at SFT's budget:", "", compare.markdown(long), "", loss_table(long), "", _wall(long), ""]
    return "\n".join([f"Grids: {grids}.", "", compare.markdown(merged), "", *extra, INTERVALS, "",
                      interval_table(skip0, rows), "", loss_table(merged), "", _wall(skip0), _wall(grid), "",
                      "Each prediction next to what came out:", "", *outcomes_step2(skip0, grid)]
                     + ([outcome_p4b(long)] if long else []))


def _step3_run(q: dict, tag: str = "") -> list[str]:
    rows = [("base", q["base"])] + [(_chosen_label(m, r), r["test"]) for m, r in q["methods"].items()]
    return [compare.markdown(q), "", INTERVALS, "", interval_table(q, rows), "", loss_table(q), "", _wall(q), "",
            "Each prediction next to what came out:", "", *outcomes_step3(q, tag)]


def step3_markdown(q: dict, grid6: dict | None = None, skip0: dict | None = None) -> str:
    lines = _step3_run(q)
    if skip0:  # amendment 4: SDFT with no loss skip, its own table and verdict
        _same_experiment([q, skip0], "step 3")
        m = skip0["methods"]["sdft"]
        lines += ["", "Amendment 4, SDFT with no loss skip:", "", compare.markdown(skip0), "",
                  interval_table(skip0, [(_chosen_label("sdft", m), m["test"])]), "", loss_table(skip0), "",
                  _wall(skip0), "", outcome_p6b(skip0)]
    if grid6:  # amendment 3: the same bars at the extended grid's choices, after the registered result
        _same_experiment([q, grid6], "step 3")
        edge = [f"{m.upper()} ({', '.join(e)})" for m, r in grid6["methods"].items()
                for e in [[x for x in _edges(r) if x.startswith("largest")]] if e]
        lines += ["", f"Amendment 3, every method's grid extended to {' x '.join(grid6['sweep'])}:", "",
                  *_step3_run(grid6, " (amendment 3)"), "- Chosen at the extended grid's largest value, so provisional: "
                  + ("; ".join(edge) if edge else "none") + "."]
    return "\n".join(lines)


def _wall(results: dict) -> str:
    return f"- {wall_clock(results)} Machine: {results['machine']}."


def loss_table(results: dict) -> str:
    """Whether training moved each point's loss: the mean of its first and of its last 5 steps."""
    lines = ["Training loss per point (SDFT: its divergence to the teacher; SFT: the NLL of the demonstrations), "
             "mean of the first 5 -> the last 5 steps:", ""]
    for method, m in results["methods"].items():
        cells = [f"{point_name(r['point'])}: {r['loss_first_last'][0]:.3f} -> {r['loss_first_last'][1]:.3f}"
                 for r in m["sweep"] if r.get("loss_first_last")]
        lines.append(f"- {method.upper()}: " + "; ".join(cells))
    return "\n".join(lines)


def render(folder: str) -> dict[str, str]:
    """The blocks whose runs are all in `folder`: {block name: markdown}."""
    have = {name: json.load(open(os.path.join(folder, name))) for name in RUNS if os.path.isfile(os.path.join(folder, name))}
    skip0, grid, long, q, grid6, q_skip0 = (have.get(name) for name in RUNS)
    blocks = {}
    if skip0 and grid:
        merged2 = {**paper_rows(skip0), **paper_rows(grid)}
        blocks["round2-step2"] = step2_markdown(skip0, grid, long)
        blocks["round2-paper"] = side_by_side(merged2, paper_rows(q) if q else None)
    if q:
        blocks["round2-step3"] = step3_markdown(q, grid6, q_skip0)
    return blocks


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdft_jax.experiments.knowledge.round2", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect", help="a compare run's results.json, with question counts and recipes, into one JSON")
    c.add_argument("workdir")
    c.add_argument("--arg", default="", help="the configs/knowledge.py argument the run used (default: RUNS's, by --out's name)")
    c.add_argument("--out", required=True)
    r = sub.add_parser("render", help="the doc's round-2 blocks from the collected JSON")
    r.add_argument("--results", default="docs/results")
    r.add_argument("--update", default="", help="the markdown file whose round2-* blocks are replaced")
    args = parser.parse_args(argv)
    if args.cmd == "collect":
        if not os.path.isfile(os.path.join(args.workdir, "results.json")):
            print(f"error: {os.path.join(args.workdir, 'results.json')}: no such file (the run has not finished)", file=sys.stderr)
            return 1
        arg = args.arg or RUNS.get(os.path.basename(args.out), ("", ""))[1]
        if not arg:
            print(f"error: --arg: needed for {args.out} (not one of {', '.join(RUNS)})", file=sys.stderr)
            return 1
        with open(args.out, "w") as f:
            json.dump(collect(args.workdir, arg), f, indent=1, sort_keys=True)
            f.write("\n")
        return 0
    blocks = render(args.results)
    if not blocks:
        needs = "; ".join(f"{step} needs {' and '.join(n for n, (st, _) in RUNS.items() if st == step and n not in AMENDMENTS)}"
                          for step in dict.fromkeys(st for st, _ in RUNS.values()))
        print(f"error: {args.results}: no step is complete ({needs}; collect them first)", file=sys.stderr)
        return 1
    for name, text in blocks.items():
        emit(text, args.update, name=name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
