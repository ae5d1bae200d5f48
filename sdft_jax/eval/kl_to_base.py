"""KL(current || base) on a task's prompts, Monte-Carlo over the current model's own samples.

Shenfeld et al. (2025, "RL's Razor") find that forgetting tracks the KL divergence between the
fine-tuned and the base policy measured on the new task, and that on-policy learning (RL, SDFT)
moves less in that KL than SFT. Per prompt x: sample y ~ pi(.|x) (temperature 1, full vocabulary),
then sum over y's tokens the exact per-token KL(pi(.|x, y<t) || pi_base(.|x, y<t)) over the whole
vocabulary (a Rao-Blackwellized estimate of the sequence KL); report the mean over prompts (nats).
The base is the run's loaded weights, copied at construction (the train step donates its state), or
`base_path`, a checkpoint of the same architecture (a continual stage measured against the first
stage's base rather than its own starting point).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sdft_jax.core import losses
from sdft_jax.data.pipeline import tokenize_all
from sdft_jax.model import load_pretrained
from sdft_jax.model.handle import placed_like
from sdft_jax.model.stop_tokens import stop_token_ids
from sdft_jax.core.sampler import SamplingConfig, make_generate
from sdft_jax.data.buckets import pad_to_bucket
from sdft_jax.core.methods import sequences
from sdft_jax.core.update import completion_hidden


class KLToBase:
    def __init__(self, name: str, ctx, *, split: str = "", examples: int = 0, max_new_tokens: int = 0,
                 batch_size: int = 8, seed: int = 0, every: int = 0, base_path: str = ""):
        c, model = ctx.defaults, ctx.model
        split = split or c.eval_split or c.split
        if split not in ctx.source:
            raise ValueError(f"evals.{name}.split={split!r} is not in the prepared splits {sorted(ctx.source)}")
        source = ctx.source[split]
        rows, _ = tokenize_all([source[i] for i in range(min(len(source), examples or c.examples))],
                               model.tokenizer, ctx.lengths, c.teacher_template)
        if not rows:
            raise ValueError(f"evals.{name}: no prompt fits the configured lengths")
        self.name, self.every, self.seed, self.batch_size = name, every, seed, batch_size
        self.prompts = [r.student for r in rows]
        self.buckets = ctx.lengths.student_buckets()
        self.pad = model.tokenizer.pad_token_id or 0
        self.base = (placed_like(model.params, load_pretrained(base_path, dtype=c.model_dtype).params)
                     if base_path else jax.tree.map(jnp.copy, model.params))
        if self.base is None:
            raise ValueError(f"evals.{name}.base_path: not the architecture of the model being trained")
        sc = SamplingConfig(max_new_tokens=max_new_tokens or c.max_new_tokens, temperature=1.0,
                            stop_ids=stop_token_ids(model.path or "", model.tokenizer), pad_id=self.pad)
        self._generate = make_generate(model.graphdef, model.config, sc)
        graphdef = model.graphdef

        @jax.jit
        def sequence_kl(params, base, batch):
            n = batch["completion_mask"].shape[1]

            def hidden(p):
                m = nnx.merge(graphdef, p)
                return completion_hidden(m, batch["student_tokens"], batch["student_mask"], n), m.head_weights()
            (h, head), (h_base, head_base) = hidden(params), hidden(base)
            stats = losses.chunked_token_stats(h, head, batch["student_tokens"][:, -n:], h_base, head_base,
                                               chunk_size=256)
            return jnp.sum(stats["reverse_kl"] * batch["completion_mask"], axis=1)  # KL(current || base)

        self._sequence_kl = sequence_kl
        self.last = []  # (prompt tokens, prompt mask, completion tokens, completion mask) per batch

    def __call__(self, params, teacher_params=None) -> dict:
        total, self.last = 0.0, []
        key = jax.random.key(self.seed)
        for lo in range(0, len(self.prompts), self.batch_size):
            chunk = self.prompts[lo: lo + self.batch_size]
            tokens, mask = pad_to_bucket(chunk, self.buckets, self.pad, min_batch=self.batch_size)
            tokens, mask = jnp.asarray(tokens), jnp.asarray(mask)
            r = self._generate(params, tokens, mask, jax.random.fold_in(key, lo))
            batch = sequences(tokens, mask, None, None, r.tokens, r.mask)
            total += float(jnp.sum(self._sequence_kl(params, self.base, batch)[: len(chunk)]))
            self.last.append((tokens[: len(chunk)], mask[: len(chunk)], r.tokens[: len(chunk)], r.mask[: len(chunk)]))
        return {self.name: total / len(self.prompts)}

