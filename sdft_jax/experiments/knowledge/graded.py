"""The knowledge experiment's amendment 5 (docs/EXPERIMENTS.md): a graded measure of what a trained
model holds, where greedy exact match sees nothing. For each held-out test question, the student
context is followed, as the assistant's reply, by each value the corpus holds for that attribute (the
true answer and its `forbidden` list, the same attribute of every other company); a reply scores the
sum of its tokens' log-probabilities. A question is chosen right when the true answer scores strictly
highest. Per model: that accuracy, the true answer's NLL and mean rank, and, per question against
the base, the exact McNemar test.

    python -m sdft_jax.experiments.knowledge.graded run --out docs/results/knowledge_r2_graded.json
    python -m sdft_jax.experiments.knowledge.graded render --update docs/EXPERIMENTS.md

`run` scores the exports the round-2 runs kept (FAMILIES), one model at a time, each cached under
$SDFT_JAX_CACHE/runs/knowledge_r2_graded/ (a rerun skips the models done).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from configs import knowledge as knowledge_config
from configs.common import real_model_path
from sdft_jax.data.buckets import buckets_up_to, pad_to_bucket
from sdft_jax.data.prompts import student_context
from sdft_jax.data.records import read_knowledge
from sdft_jax.experiments.knowledge.round2 import EPS
from sdft_jax.experiments.stats import mcnemar_exact, paired, wilson
from sdft_jax.model import load_pretrained
from sdft_jax.model.transformer import default_positions, init_cache
from sdft_jax.runtime.cache import cache_root
from sdft_jax.runtime.doc_block import emit

# Per model family: its corpus (seed 0, N companies), its base (a real_models.py folder) and, in order,
# (method, label, run folder under $SDFT_JAX_CACHE/runs/, sweep point), the base first. Named in the doc
# before any was scored; a label also names the model's cache file.
FAMILIES = {
    "smollm2_135m": dict(
        title="SmolLM2-135M, full fine-tuning", companies=30, base=knowledge_config.MODELS["smollm2_135m"],
        models=[
            ("base", "base", "", ""),
            ("sdft", "SDFT 2e-5 x 2 epochs, no skip (step 2's choice)",
             "knowledge_r2_sdft_skip0/sdft", "optim.lr=2e-05,steps=30"),
            ("sdft", "SDFT 2e-4 x 8 epochs, no skip (amendment 2's choice)",
             "knowledge_r2_sdft_long/sdft", "optim.lr=0.0002,steps=120"),
            ("sdft", "SDFT 6e-4 x 8 epochs, no skip (amendment 2)",
             "knowledge_r2_sdft_long/sdft", "optim.lr=0.0006,steps=120"),
            ("sft", "SFT 6e-4 x 8 epochs (step 2's choice)",
             "knowledge_r2_sft_grid/sft", "optim.lr=0.0006,steps=120"),
        ]),
    "qwen2_5_0_5b": dict(
        title="Qwen2.5-Coder-0.5B, LoRA 16", companies=10, base=knowledge_config.MODELS["qwen2_5_0_5b"],
        models=[
            ("base", "base", "", ""),
            ("sdft", "SDFT 1e-4 x 4 epochs, skip 3 (step 3's choice)",
             "knowledge_r2_qwen_lora/sdft", "optim.lr=0.0001,steps=20"),
            ("sdft", "SDFT 1e-4 x 4 epochs, no skip (amendment 4's choice)",
             "knowledge_r2_qwen_sdft_skip0/sdft", "optim.lr=0.0001,steps=20"),
            ("sdft", "SDFT 5e-4 x 4 epochs, no skip (amendment 4)",
             "knowledge_r2_qwen_sdft_skip0/sdft", "optim.lr=0.0005,steps=20"),
            ("offline", "offline 1e-4 x 4 epochs (step 3's choice)",
             "knowledge_r2_qwen_lora/offline", "optim.lr=0.0001,steps=20"),
            ("offline", "offline 5e-4 x 4 epochs (step 3)",
             "knowledge_r2_qwen_lora/offline", "optim.lr=0.0005,steps=20"),
            ("sft", "SFT 5e-4 x 4 epochs (step 3's choice)",
             "knowledge_r2_qwen_lora/sft", "optim.lr=0.0005,steps=20"),
        ]),
}


def questions(corpus: str) -> list[dict]:
    """The held-out test questions as the evaluations read them (knowledge rows, in file order)."""
    return list(read_knowledge(os.path.join(corpus, "heldout", "test.jsonl")))


@functools.lru_cache(maxsize=4)
def _choice_logp(graphdef):
    """jitted (params, context [B, P] left-padded, its mask, values [B, K, L] right-padded, their mask) ->
    [B, K]: each value's summed log-prob as the continuation of its context. The context runs once into a
    KV cache that its K values share (a question's 30 values cost one context, not 30)."""
    @jax.jit
    def logp(params, ctx_BxP, ctx_mask_BxP, val_BxKxL, val_mask_BxKxL):
        model = nnx.merge(graphdef, params)
        (B, P), (_, K, L) = ctx_BxP.shape, val_BxKxL.shape
        kv_mask = jnp.pad(ctx_mask_BxP, [(0, 0), (0, L)])
        h_BxPxD, cache = model.hidden_states(ctx_BxP, default_positions(ctx_mask_BxP), kv_mask,
                                             init_cache(model.cfg, B, P + L))
        cache = {**cache, "k": jnp.repeat(cache["k"], K, axis=1), "v": jnp.repeat(cache["v"], K, axis=1)}
        val_mask = val_mask_BxKxL.reshape(B * K, L)
        kv_mask = jnp.repeat(kv_mask, K, axis=0).at[:, P:].set(val_mask)
        positions = jnp.repeat(ctx_mask_BxP.sum(1), K)[:, None] + jnp.arange(L)[None]
        val = val_BxKxL.reshape(B * K, L)
        h_vals, _ = model.hidden_states(val, positions, kv_mask, cache)
        # value token t is predicted from the hidden state before it: the context's last, then value tokens < t
        h_prev = jnp.concatenate([jnp.repeat(h_BxPxD[:, -1:], K, axis=0), h_vals[:, :-1]], axis=1)
        lp = jax.nn.log_softmax(model.logits(h_prev), axis=-1)
        picked = jnp.take_along_axis(lp, val[..., None], axis=-1)[..., 0]
        return jnp.sum(picked * val_mask, axis=-1).reshape(B, K)
    return logp


def _values(ex: dict) -> list[str]:
    """The attribute's values for a question: the true answer first, then the other companies' (`forbidden`)."""
    raw = json.loads(ex["raw"])
    return [raw["answer"], *raw["forbidden"]]


def score(model, rows: list[dict], batch_size: int = 4) -> list[dict]:
    """Per question: the true answer's log-prob as the reply, the best other value's, the true answer's
    rank (1 + the values scoring at least as high: a tie is not a right choice), every value's log-prob, and
    the true answer's association: its log-prob here minus its mean on the attribute's other questions."""
    tok = model.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    names = [_values(ex) for ex in rows]
    contexts, values = [], []
    for ex, row_names in zip(rows, names):
        context = student_context(tok, ex)
        ids = tok(context, add_special_tokens=False).input_ids
        contexts.append(ids)
        values.append([])
        for v in row_names:
            whole = tok(context + v, add_special_tokens=False).input_ids
            if whole[: len(ids)] != ids or len(whole) == len(ids):
                raise ValueError(f"{ex['id']}: {v!r} does not tokenize as a continuation of the student context")
            values[-1].append(whole[len(ids):])
    K = len(values[0])
    if any(len(v) != K for v in values):
        raise ValueError("every question needs the same number of values (the true answer and its forbidden list)")
    L = -(-max(len(t) for v in values for t in v) // 8) * 8
    buckets, fn, logp = buckets_up_to(max(map(len, contexts)), smallest=32), _choice_logp(model.graphdef), []
    for lo in range(0, len(rows), batch_size):
        chunk = list(range(lo, min(lo + batch_size, len(rows))))
        chunk += [chunk[-1]] * (batch_size - len(chunk))  # a fixed batch: one compile per context bucket
        ctx, ctx_mask = pad_to_bucket([contexts[i] for i in chunk], buckets, pad, min_batch=batch_size)
        val, val_mask = np.full((batch_size, K, L), pad, np.int32), np.zeros((batch_size, K, L), np.int32)
        for b, i in enumerate(chunk):
            for k, t in enumerate(values[i]):
                val[b, k, : len(t)], val_mask[b, k, : len(t)] = t, 1
        out = np.asarray(fn(model.params, *map(jnp.asarray, (ctx, ctx_mask, val, val_mask))))
        logp += [list(map(float, out[b])) for b in range(min(batch_size, len(rows) - lo))]
    # amendment 5b: each value on its own company's question against the same attribute's other questions
    on = {}  # (attribute's values, value) -> {question id: log-prob}
    for ex, row_names, lp in zip(rows, names, logp):
        for v, x in zip(row_names, lp):
            on.setdefault((frozenset(row_names), v), {})[ex["id"]] = x
    records = []
    for ex, row_names, lp in zip(rows, names, logp):
        scores = on[frozenset(row_names), row_names[0]]
        others = [x for qid, x in scores.items() if qid != ex["id"]]
        records.append({"id": ex["id"], "true_logp": lp[0], "best_other_logp": max(lp[1:]),
                        "rank": 1 + sum(o >= lp[0] for o in lp[1:]),
                        "association": lp[0] - float(np.mean(others)) if others else None,
                        "logp": [round(x, 4) for x in lp]})  # [true answer, *forbidden], as the corpus lists them
    return records


def aggregate(records: list[dict]) -> dict:
    n = len(records)
    right = sum(r["rank"] == 1 for r in records)
    return {"n": n, "right": right, "accuracy": right / n, "nll": -float(np.mean([r["true_logp"] for r in records])),
            "mean_rank": float(np.mean([r["rank"] for r in records]))}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")


def run(out: str, runs_root: str = "", families: dict = FAMILIES) -> dict:
    runs_root = runs_root or os.path.join(cache_root(), "runs")
    cache = os.path.join(runs_root, "knowledge_r2_graded")
    os.makedirs(cache, exist_ok=True)
    todo = [(fam, spec, m, os.path.join(cache, f"{fam}__{_slug(m[1])}.json"))
            for fam, spec in families.items() for m in spec["models"]]
    paths = {}
    for fam, spec, (method, label, folder, point), cached in todo:  # every model to score present before the first
        path = os.path.join(runs_root, folder, point, "export") if folder else real_model_path(spec["base"])
        if not os.path.isfile(cached) and not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"{path}: no exported model ({fam}, {label})")
        paths[fam, label] = path
    corpus = {fam: questions(knowledge_config.corpus_folder(0, spec["companies"])) for fam, spec in families.items()}
    result = {"families": {}}
    for i, (fam, spec, (method, label, _, _), cached) in enumerate(todo, 1):
        if not os.path.isfile(cached):
            start = time.perf_counter()
            model = load_pretrained(paths[fam, label], dtype="float32")
            records = score(model, corpus[fam])
            row = {"method": method, "label": label, "path": paths[fam, label], **aggregate(records),
                   "seconds": round(time.perf_counter() - start, 1), "questions": records}
            with open(cached + ".tmp", "w") as f:
                json.dump(row, f, indent=1)
            os.replace(cached + ".tmp", cached)
        row = json.load(open(cached))
        company = {ex["id"]: json.loads(ex["raw"])["title"] for ex in corpus[fam]}
        for q in row["questions"]:  # each question's company: 5b's intervals with companies as the unit
            q["company"] = company[q["id"]]
        print(f"[graded] {i}/{len(todo)} {fam}: {label}: right {row['right']}/{row['n']}, true-answer NLL "
              f"{row['nll']:.3f}, {row['seconds']:.0f} s", file=sys.stderr, flush=True)
        family = result["families"].setdefault(fam, dict(title=spec["title"], companies=spec["companies"], models=[]))
        family["models"].append(row)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)  # not sorted: the families and models in FAMILIES' order
        f.write("\n")
    return result


def paired_with_base(base: dict, row: dict) -> dict:
    """Per question against the base: gained (base wrong, model right), lost, and the exact McNemar p."""
    base_right = {q["id"]: q["rank"] == 1 for q in base["questions"]}
    if set(base_right) != {q["id"] for q in row["questions"]}:
        raise ValueError(f"{row['label']}: not the base's questions")
    gained = sum(q["rank"] == 1 and not base_right[q["id"]] for q in row["questions"])
    lost = sum(q["rank"] != 1 and base_right[q["id"]] for q in row["questions"])
    return {"gained": gained, "lost": lost, "p": mcnemar_exact(gained, lost)}


def _other_nll(row: dict) -> float:
    """The best other value's NLL, the mean over questions: whether the true answer rose alone or with its rivals."""
    return -float(np.mean([q["best_other_logp"] for q in row["questions"]]))


def table(fam: dict) -> str:
    base = fam["models"][0]
    n, k = base["n"], fam["companies"]
    lines = [f"{fam['title']}: {n} held-out test questions, {k} values each (chance {1 / k:.3f}):", "",
             "| model | true answer ranked first [95% Wilson] | gained / lost vs base | McNemar p | "
             "true answer NLL (nats) | its change | best other value's NLL change | mean rank |",
             "|---|---|---|---|---|---|---|---|"]
    for row in fam["models"]:
        lo, hi = wilson(row["right"], row["n"])
        vs = paired_with_base(base, row) if row is not base else None
        changes = (f"{row['nll'] - base['nll']:+.3f} | {_other_nll(row) - _other_nll(base):+.3f}" if vs else " | ")
        lines.append(f"| {row['label']} | {row['accuracy']:.3f} [{lo:.2f}, {hi:.2f}] ({row['right']}/{row['n']}) | "
                     + (f"{vs['gained']} / {vs['lost']} | {vs['p']:.3g} | " if vs else " |  | ")
                     + f"{row['nll']:.3f} | {changes} | {row['mean_rank']:.2f} |")
    return "\n".join(lines)


def outcomes(result: dict) -> list[str]:
    """P10 and P11 against their bars (docs/EXPERIMENTS.md, amendment 5)."""
    sdft, failed = [], []
    for fam in result["families"].values():
        base = fam["models"][0]
        for row in fam["models"][1:]:
            if row["method"] == "sdft":
                vs = paired_with_base(base, row)
                gap = row["accuracy"] - base["accuracy"]
                sdft.append(f"{row['label']} {gap:+.3f} (p {vs['p']:.3g})")
                if gap > 0.10 + EPS or vs["p"] < 0.05:
                    failed.append(row["label"])
    lines = [f"- **P10 {'held' if not failed else 'did not hold'}.** SDFT's choice accuracy minus its base's "
             f"(bar <= +0.10, and p >= 0.05 for each): " + "; ".join(sdft) + "."
             + (f" Over a bar: {', '.join(failed)}." if failed else "")]
    parts, held = [], True
    for name, fam in result["families"].items():
        base, sft = fam["models"][0], next(r for r in fam["models"] if r["method"] == "sft")
        vs = paired_with_base(base, sft)
        if name == "smollm2_135m":
            ok = sft["accuracy"] >= 0.75 - EPS
            part = f"SFT {sft['accuracy']:.3f} (bar >= 0.75)"
        else:
            ok = sft["accuracy"] - base["accuracy"] >= 0.10 - EPS and vs["p"] < 0.05
            part = (f"SFT {sft['accuracy']:.3f} against the base's {base['accuracy']:.3f} (bar >= +0.10), "
                    f"p {vs['p']:.3g} (bar < 0.05)")
        parts.append(f"{fam['title']}, {'held' if ok else 'did not hold'}: {part}")
        held = held and ok
    lines.append(f"- **P11 {'held' if held else 'did not hold'}.** " + "; ".join(parts) + ".")
    return lines


def markdown(result: dict) -> str:
    return "\n\n".join([*(table(fam) for fam in result["families"].values()), "\n".join(outcomes(result))])


def association_change(base: dict, row: dict) -> dict:
    """Amendment 5b: the model's association minus its base's, per value (matched by its own question):
    stats.paired's mean, 95% t interval, p and how many rose."""
    mine = {q["id"]: q["association"] for q in row["questions"]}
    return paired([mine[q["id"]] for q in base["questions"]], [q["association"] for q in base["questions"]])


def association_change_by_company(base: dict, row: dict) -> dict:
    """The same change with companies as the unit (the mean of each company's values: they share an article)."""
    def by_company(r):
        groups = {}
        for q in r["questions"]:
            groups.setdefault(q["company"], []).append(q["association"])
        return {c: float(np.mean(v)) for c, v in groups.items()}
    mine, theirs = by_company(row), by_company(base)
    return paired([mine[c] for c in theirs], list(theirs.values()))


def _interval(d: dict) -> str:
    return f"{d['mean']:+.3f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]"


def _p(d: dict) -> str:
    return "-" if d["p"] is None else format(d["p"], ".3g")


def association_table(fam: dict) -> str:
    base = fam["models"][0]
    lines = [f"{fam['title']}: {base['n']} values, each against the {fam['companies'] - 1} other companies' questions "
             "of its attribute:", "",
             "| model | mean association (nats) | change vs base [95% t, over values] | paired p | values up / down | "
             "change, companies as the unit [95% t] | paired p |", "|---|---|---|---|---|---|---|"]
    for row in fam["models"]:
        mean = float(np.mean([q["association"] for q in row["questions"]]))
        if row is base:
            lines.append(f"| {row['label']} | {mean:+.3f} |  |  |  |  |  |")
            continue
        d, c = association_change(base, row), association_change_by_company(base, row)
        lines.append(f"| {row['label']} | {mean:+.3f} | {_interval(d)} | {_p(d)} | {d['positive']} / {d['negative']} | "
                     f"{_interval(c)} | {_p(c)} |")
    return "\n".join(lines)


def outcomes_association(result: dict) -> list[str]:
    """P12 (SFT's change above 0, interval above 0, at both sizes) and P13 (every SDFT change below 2 nats)."""
    sft, sdft, held12, held13 = [], [], True, True
    for fam in result["families"].values():
        base = fam["models"][0]
        for row in fam["models"][1:]:
            d = association_change(base, row)
            text = f"{row['label']} {_interval(d)}"
            if row["method"] == "sft":
                sft.append(f"{fam['title']}: {text}")
                held12 = held12 and d["mean"] > 0 and d["ci95"][0] > 0
            elif row["method"] == "sdft":
                sdft.append(text + (", interval above 0" if d["ci95"][0] > 0 else ""))
                held13 = held13 and d["mean"] < 2.0
    return [f"- **P12 {'held' if held12 else 'did not hold'}.** SFT's mean change in association (bar: above 0, "
            f"interval above 0): " + "; ".join(sft) + ".",
            f"- **P13 {'held' if held13 else 'did not hold'}.** SDFT's mean change in association (bar: below 2 nats "
            f"each): " + "; ".join(sdft) + "."]


def association_markdown(result: dict) -> str:
    return "\n\n".join([*(association_table(fam) for fam in result["families"].values()),
                         "\n".join(outcomes_association(result))])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdft_jax.experiments.knowledge.graded",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="score every model of FAMILIES (cached per model) into one JSON")
    r.add_argument("--out", required=True)
    d = sub.add_parser("render", help="the doc's round2-graded and round2-association blocks from the JSON")
    d.add_argument("--results", default="docs/results/knowledge_r2_graded.json")
    d.add_argument("--update", default="", help="the markdown file whose two blocks are replaced")
    args = parser.parse_args(argv)
    if args.cmd == "run":
        try:
            run(args.out)
        except FileNotFoundError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    result = json.load(open(args.results))
    emit(markdown(result), args.update, name="round2-graded")
    emit(association_markdown(result), args.update, name="round2-association")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
