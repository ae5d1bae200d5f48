"""Evaluators the training loop calls every `eval.every` steps: `ev(params) -> {name: value}`.
Task scorers and the continual-learning suite plug into the same interface."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sdft_jax import losses
from sdft_jax import sharding as shd
from sdft_jax.data.pipeline import Lengths, _left_pad, _right_pad, bucket_length, tokenize_all


class HeldoutDemonstrationNLL:
    """Mean negative log-likelihood per token of held-out demonstrations under the STUDENT context:
    how much of the demonstrated behaviour the student has absorbed (SDFT and SFT alike)."""

    name = "eval/demo_nll"

    def __init__(self, model, source, lengths: Lengths, template: str, max_examples: int, mesh):
        examples, _ = tokenize_all([source[i] for i in range(min(len(source), max_examples))],
                                   model.tokenizer, lengths, template)
        if not examples:
            raise ValueError("eval: no held-out example fits the configured lengths")
        dp = mesh.shape["data"] * mesh.shape["fsdp"]
        rows = examples + examples[: (-len(examples)) % dp]  # pad to the data-parallel size
        weights = np.zeros(len(rows), np.float32)
        weights[: len(examples)] = 1.0  # repeated rows do not count
        pad = model.tokenizer.pad_token_id or 0
        ps = bucket_length(max(len(r.student) for r in rows), lengths.student_buckets(), "eval prompt")
        sp, sm = _left_pad([r.student for r in rows], ps, pad)
        tg, tm = _right_pad([r.target for r in rows], lengths.max_completion, pad)
        def put(x):  # every process holds the full array; each device takes its rows
            return jax.make_array_from_callback(x.shape, shd.batch_sharding(mesh, x.ndim), lambda idx: x[idx])
        self.batch = {"tokens": put(np.concatenate([sp, tg], 1)), "mask": put(np.concatenate([sm, tm], 1)),
                      "target_mask": put(tm * weights[:, None].astype(np.int32))}
        graphdef, n = model.graphdef, lengths.max_completion

        @jax.jit
        def nll(params, batch):
            m = nnx.merge(graphdef, params)
            h, _ = m.hidden_states(batch["tokens"], None, batch["mask"])
            stats = losses.chunked_token_stats(h[:, -n - 1:-1], m.head_weights(), batch["tokens"][:, -n:],
                                               chunk_size=256)
            mask = batch["target_mask"].astype(jnp.float32)
            return -jnp.sum(stats["student_logp"] * mask) / jnp.maximum(jnp.sum(mask), 1.0)

        self._nll = nll

    def __call__(self, params) -> dict:
        return {self.name: float(self._nll(params, self.batch))}
