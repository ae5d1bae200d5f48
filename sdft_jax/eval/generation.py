"""Generate over a split with our sampler, score each completion, aggregate.

`with_demonstration=True` evaluates the TEACHER context (demonstration in context): the
in-context-learning ceiling that SDFT distils from.
"""
from __future__ import annotations

import functools
import json
import sys
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sdft_jax.data.prompts import DEFAULT_TEACHER_TEMPLATE, student_context, teacher_context
from sdft_jax.eval.scorers import pass_at_k, score_completion
from sdft_jax.model.stop_tokens import stop_token_ids
from sdft_jax.core.sampler import SamplingConfig, make_generate
from sdft_jax.data.buckets import buckets_up_to, pad_to_bucket


def completion_text(tok, tokens, length: int, stops) -> str:
    """A rollout row's completion as text: its first `length` tokens, stop tokens dropped."""
    return tok.decode([int(t) for t in tokens[:length] if int(t) not in stops], skip_special_tokens=True)


def scored_example(ex: dict) -> dict:
    """What a scorer reads for a prepared row: the source row it came from (`raw`), else the row itself."""
    return json.loads(ex["raw"]) if ex.get("raw") else ex


@functools.lru_cache(maxsize=32)
def _generate_fn(graphdef, config, sampling: SamplingConfig):
    """One jitted sampler per (architecture, sampling settings): evaluating many checkpoints of one
    model (a continual run) compiles once per prompt bucket, not once per call."""
    return make_generate(graphdef, config, sampling)


def evaluate(model, examples: Sequence[dict], task: str, *, with_demonstration: bool = False,
             template: str = DEFAULT_TEACHER_TEMPLATE, max_new_tokens: int = 512, max_prompt: int = 4096,
             batch_size: int = 8, temperature: float = 0.0, top_p: float = 1.0, num_samples: int = 1,
             seed: int = 0, out_jsonl: str | None = None, params=None, stop_ids: Sequence[int] | None = None,
             progress: bool = False, also_scorers: Sequence[str] = ()) -> dict:
    """Greedy by default; with temperature > 0 and num_samples = n, also pass@k for k <= n.
    `also_scorers`: more scorers applied to the same first completions (`accuracy:NAME`), so one
    generation pass gives e.g. strict and lenient knowledge accuracy."""
    tok = model.tokenizer
    params = model.params if params is None else params
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    stops = tuple(stop_ids) if stop_ids is not None else stop_token_ids(model.path or "", tok)
    sc = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                        stop_ids=stops, pad_id=pad)
    generate = _generate_fn(model.graphdef, model.config, sc)
    buckets = buckets_up_to(max_prompt)
    contexts, kept, skipped = [], [], 0
    for ex in examples:
        text = teacher_context(tok, ex, template) if with_demonstration else student_context(tok, ex)
        ids = tok(text, add_special_tokens=False).input_ids
        if len(ids) > max_prompt:
            skipped += 1
            continue
        contexts.append(ids)
        kept.append(ex)
    if skipped:  # stderr: stdout carries the metrics JSON; the accuracy below is over the rows kept
        print(f"eval {task}: {skipped} of {len(examples)} rows are longer than max_prompt={max_prompt} tokens and were "
              f"not evaluated", file=sys.stderr, flush=True)
    start, records, generated, cut = time.perf_counter(), [], 0, 0
    key = jax.random.key(seed)
    for lo in range(0, len(contexts), batch_size):
        chunk = contexts[lo: lo + batch_size]
        tokens, mask = pad_to_bucket(chunk, buckets, pad, min_batch=batch_size)  # fixed batch: one compile
        completions = [[] for _ in chunk]
        for s in range(num_samples):
            r = generate(params, jnp.asarray(tokens), jnp.asarray(mask), jax.random.fold_in(key, lo * 1000 + s))
            toks, lens = np.asarray(r.tokens), np.asarray(r.lengths)
            generated += int(lens[: len(chunk)].sum())
            for i in range(len(chunk)):
                completions[i].append(completion_text(tok, toks[i], lens[i], stops))
                if s == 0 and lens[i] >= max_new_tokens and int(toks[i][lens[i] - 1]) not in stops:
                    cut += 1  # ran out of tokens before its end of turn
        for ex, samples in zip(kept[lo: lo + batch_size], completions):
            raw = scored_example(ex)
            scores = [score_completion(task, c, raw) for c in samples]
            records.append({"id": ex["id"], "prompt": ex["prompt"], "completion": samples[0],
                            "score": scores[0], "scores": scores,
                            **{f"score:{a}": score_completion(a, samples[0], raw) for a in also_scorers}})
        if progress:  # stderr: stdout carries the metrics JSON
            elapsed = time.perf_counter() - start
            eta = elapsed / len(records) * (len(contexts) - len(records))
            print(f"eval {task} ({'teacher' if with_demonstration else 'student'} context): {len(records)}/"
                  f"{len(contexts)} rows | {generated / elapsed:,.0f} generated tok/s | elapsed {elapsed:.0f}s | "
                  f"ETA {eta:.0f}s", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    n = len(records)
    metrics = {"task": task, "context": "teacher" if with_demonstration else "student", "n": n,
               "skipped_too_long": skipped, "cut": cut, "accuracy": float(np.mean([r["score"] for r in records])) if n else 0.0,
               "seconds": round(seconds, 2)}
    for a in also_scorers:
        metrics[f"accuracy:{a}"] = float(np.mean([r[f"score:{a}"] for r in records])) if n else 0.0
    if num_samples > 1:
        for k in sorted({1, num_samples} | {k for k in (2, 4, 8, 16) if k < num_samples}):
            metrics[f"pass@{k}"] = float(np.mean([pass_at_k(num_samples, int(sum(s >= 1.0 for s in r["scores"])), k)
                                                  for r in records])) if n else 0.0
    if out_jsonl:
        with open(out_jsonl, "w") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return metrics
