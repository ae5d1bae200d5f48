"""Held-out demonstration NLL: mean negative log-likelihood per token of held-out demonstrations.

context="student": student prompt + demonstration under the student weights (how much of the
demonstrated behaviour the student has absorbed, SDFT and SFT alike). context="teacher": teacher
prompt (demonstration in context) + demonstration under the teacher weights (teacher health: an
SDFT teacher that forgets its in-context skill stops being a useful target).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sdft_jax.core import losses
from sdft_jax import sharding as shd
from sdft_jax.data.buckets import bucket_length, left_pad, right_pad
from sdft_jax.data.pipeline import tokenize_all
from sdft_jax.core.update import completion_hidden


def nll_program(graphdef, n_target: int, mesh=None):
    """jitted (params, {tokens, mask, target_mask}) -> mean NLL per target token of the last n_target
    positions (sdft_jax.aot compiles it from shapes)."""
    @jax.jit
    @functools.partial(shd.traced_under, mesh)
    def nll(params, batch):
        m = nnx.merge(graphdef, params)
        h = completion_hidden(m, batch["tokens"], batch["mask"], n_target)
        stats = losses.chunked_token_stats(h, m.head_weights(), batch["tokens"][:, -n_target:], chunk_size=256)
        mask = batch["target_mask"].astype(jnp.float32)
        return -jnp.sum(stats["student_logp"] * mask) / jnp.maximum(jnp.sum(mask), 1.0)
    return nll


class HeldoutNLL:
    def __init__(self, name: str, ctx, *, split: str = "", examples: int = 0, context: str = "student",
                 every: int = 0):
        split = split or ctx.defaults.eval_split
        if split not in ctx.source:
            raise ValueError(f"evals.{name}.split={split!r} is not in the prepared splits {sorted(ctx.source)}")
        self.name, self.every, self.context = name, every, context
        source, lengths, model = ctx.source[split], ctx.lengths, ctx.model
        n = min(len(source), examples or ctx.defaults.examples)
        rows, _ = tokenize_all([source[i] for i in range(n)], model.tokenizer, lengths, ctx.defaults.teacher_template)
        if not rows:
            raise ValueError(f"evals.{name}: no held-out example fits the configured lengths")
        dp = ctx.mesh.shape["data"] * ctx.mesh.shape["fsdp"]
        weights = np.zeros(len(rows) + (-len(rows)) % dp, np.float32)
        weights[: len(rows)] = 1.0  # rows repeated to fill the data-parallel size do not count
        rows = rows + rows[: (-len(rows)) % dp]
        prompts = [r.teacher if context == "teacher" else r.student for r in rows]
        buckets = lengths.teacher_buckets() if context == "teacher" else lengths.student_buckets()
        pad = model.tokenizer.pad_token_id or 0
        p, pm = left_pad(prompts, bucket_length(max(map(len, prompts)), buckets, "eval prompt"), pad)
        tg, tm = right_pad([r.target for r in rows], lengths.max_completion, pad)

        def put(x):  # every process holds the full array; each device takes its rows
            return jax.make_array_from_callback(x.shape, shd.batch_sharding(ctx.mesh, x.ndim), lambda idx: x[idx])
        self.batch = {"tokens": put(np.concatenate([p, tg], 1)), "mask": put(np.concatenate([pm, tm], 1)),
                      "target_mask": put(tm * weights[:, None].astype(np.int32))}
        self._nll = nll_program(model.graphdef, lengths.max_completion, ctx.mesh)

    def __call__(self, params, teacher_params=None) -> dict:
        weights = teacher_params if self.context == "teacher" and teacher_params is not None else params
        return {self.name: float(self._nll(weights, self.batch))}
