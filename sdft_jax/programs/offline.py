"""method=offline: before the first step, the run's initial model with the demonstration in context
(the teacher context) samples `sampling.num_generations` completions per training prompt with the
run's sampling settings; training is then SFT of the student context on them (the paper's offline
self-distillation ablation). Generated once and stored in WORKDIR/offline_targets.jsonl (a resume
reads them back; a changed model, seed, sampling or data regenerates them)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from sdft_jax.core.sampler import SamplingConfig, make_generate
from sdft_jax.data.buckets import pad_to_bucket
from sdft_jax.data.pipeline import TokenizedExample

FILE = "offline_targets.jsonl"


def teacher_completions(model, examples: list[TokenizedExample], sampling: SamplingConfig, buckets,
                        batch_size: int, generations: int, seed: int, say=print) -> list[list[list[int]]]:
    """For each example, `generations` completions sampled from its teacher context: [example][g] ->
    token ids up to and including the stop token (as a rollout's mask has them). Rows go in batches
    of `batch_size` (the last one padded), batch b and generation g with key fold_in(fold_in(seed, b), g)."""
    generate = make_generate(model.graphdef, model.config, sampling)
    key = jax.random.key(seed)
    out: list[list[list[int]]] = []
    for b, lo in enumerate(range(0, len(examples), batch_size)):
        chunk = examples[lo: lo + batch_size]
        tokens, mask = pad_to_bucket([ex.teacher for ex in chunk], buckets, sampling.pad_id, min_batch=batch_size)
        rows = [[] for _ in chunk]
        for g in range(generations):
            r = generate(model.params, jnp.asarray(tokens), jnp.asarray(mask),
                         jax.random.fold_in(jax.random.fold_in(key, b), g))
            toks, lens = np.asarray(r.tokens), np.asarray(r.lengths)
            for i in range(len(chunk)):
                rows[i].append([int(t) for t in toks[i, : lens[i]]])
        out.extend(rows)
        if len(out) == len(examples) or b % max(1, len(examples) // batch_size // 10) == 0:
            say(f"offline targets: {len(out)}/{len(examples)} prompts x {generations} completion(s) from the teacher "
                f"context")
    return out


def fingerprint(model_path: str, examples: list[TokenizedExample], sampling: SamplingConfig, generations: int,
                seed: int, batch_size: int) -> str:
    """What determines the completions: a stored file with another fingerprint is regenerated."""
    h = hashlib.sha256()
    h.update(json.dumps([model_path, dataclasses.asdict(sampling), generations, seed, batch_size],
                        sort_keys=True, default=str).encode())
    for ex in examples:
        h.update(json.dumps([ex.index, ex.teacher]).encode())
    return h.hexdigest()[:16]


def with_teacher_targets(workdir: str, model, examples: list[TokenizedExample], sampling: SamplingConfig, buckets,
                         batch_size: int, generations: int, seed: int, write: bool, say=print):
    """-> (the examples with their targets replaced by the teacher's completions, one example per
    completion; stats for data_stats.json). Read from WORKDIR/offline_targets.jsonl when it holds
    these settings' completions, else generated and written there (by process 0: `write`)."""
    path = os.path.join(workdir, FILE)
    key = fingerprint(model.path, examples, sampling, generations, seed, batch_size)
    completions = _read(path, key, len(examples))
    if completions is None:
        completions = teacher_completions(model, examples, sampling, buckets, batch_size, generations, seed, say)
        if write:
            _write(path, key, examples, completions)
    else:
        say(f"offline targets: read {len(examples)} x {generations} completions from {path}")
    out = [dataclasses.replace(ex, id=f"{ex.id}#{g}", target=ids)
           for ex, rows in zip(examples, completions) for g, ids in enumerate(rows)]
    lengths = [len(t.target) for t in out]
    stopped = [bool(t.target) and t.target[-1] in sampling.stop_ids for t in out]
    stats = {"completions": len(out), "generations_per_prompt": generations, "file": path,
             "mean_tokens": float(np.mean(lengths)) if out else 0.0,
             "stopped_fraction": float(np.mean(stopped)) if out else 0.0,
             "empty": int(sum(n == 0 for n in lengths))}
    return out, stats


def _read(path: str, key: str, n: int):
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        header = json.loads(f.readline())
        if header.get("fingerprint") != key or header.get("examples") != n:
            return None
        return [json.loads(line)["completions"] for line in f]


def _write(path: str, key: str, examples, completions) -> None:
    with open(path + ".partial", "w") as f:
        f.write(json.dumps({"fingerprint": key, "examples": len(examples)}) + "\n")
        for ex, rows in zip(examples, completions):
            f.write(json.dumps({"index": ex.index, "id": ex.id, "completions": rows}) + "\n")
    os.replace(path + ".partial", path)
