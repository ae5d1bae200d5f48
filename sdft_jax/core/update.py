"""The update inside each optimizer step (core/step.py runs it after the rollout): (state, batch) ->
(state, metrics): teacher forward under stop-gradient, student forward/backward, AdamW, EMA.

Batch (static shapes; prompts LEFT-padded to P, completions RIGHT-padded to N):
  student_tokens, student_mask  [B, Ps + N]   student context + completion y
  teacher_tokens, teacher_mask  [B, Pt + N]   teacher context + the SAME y      (sdft only)
  completion_mask               [B, N]        1 on real completion tokens
  sampler_logprobs              [B, N]        sampler's log p(y) (importance correction only)
For SFT the "completion" is the demonstration and there is no teacher side. What differs between
methods (the per-token loss, a teacher or not) the method's record says (core/methods.py).

The LM head runs only on the N completion positions, chunk by chunk (losses.chunked_token_stats).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from sdft_jax.core import losses, methods
from sdft_jax.core.train_state import TEACHER_KINDS, TrainState
from sdft_jax.model.lora import combine


@dataclasses.dataclass(frozen=True)
class StepConfig:
    method: str = "sdft"
    loss_kind: str = "forward_kl"  # forward_kl | reverse_kl | jsd | sampled_token
    beta: float = 0.5
    top_k: int = 0  # 0 = full vocabulary
    top_k_support: str = "teacher"
    temperature: float = 1.0
    skip_first_tokens: int = 3
    aggregation: str = "sequence_mean"
    chunk_size: int = 256
    teacher_kind: str = "ema"  # ema | frozen | live
    ema_alpha: float = 0.01
    importance_correction: bool = False
    importance_cap: float = 2.0
    micro_batches: int = 1

    def __post_init__(self):
        methods.get(self.method)  # raises, naming the known methods
        if self.loss_kind not in losses.KINDS + ("sampled_token",):
            raise ValueError(f"loss.kind={self.loss_kind!r}; expected one of {losses.KINDS + ('sampled_token',)}")
        if self.teacher_kind not in TEACHER_KINDS:
            raise ValueError(f"teacher.kind={self.teacher_kind!r}; expected one of {TEACHER_KINDS}")
        if self.aggregation not in losses.AGGREGATIONS:
            raise ValueError(f"loss.aggregation={self.aggregation!r}; expected one of {losses.AGGREGATIONS}")
        if not 0.0 < self.ema_alpha <= 1.0:
            raise ValueError(f"teacher.ema_alpha={self.ema_alpha} must be in (0, 1]")
        if self.micro_batches < 1:
            raise ValueError(f"batch.micro_batches={self.micro_batches} must be >= 1")


def completion_hidden(model, tokens, mask, n: int):
    """Final hidden states at the positions that predict the last n tokens: [B, n, D]."""
    h, _ = model.hidden_states(tokens, None, mask)
    return h[:, -n - 1:-1]


def _micro_loss(params, teacher_params, mb, graphdef, sc: StepConfig, normalizer, frozen=None,
                teacher_graphdef=None):
    """Loss (a SUM over this micro-batch divided by the global normalizer) and metric sums.
    `params` is what trains: the whole model, or the LoRA adapters over the `frozen` base.
    With an external teacher, `teacher_params` are its whole params and `teacher_graphdef` its model."""
    method = methods.get(sc.method)
    n = mb["completion_mask"].shape[1]
    targets = mb["student_tokens"][:, -n:]
    student = nnx.merge(graphdef, combine(frozen, params))
    s_hidden = completion_hidden(student, mb["student_tokens"], mb["student_mask"], n)
    t_hidden = t_head = None
    s_head = student.head_weights()
    if method.distills:
        teacher = (nnx.merge(teacher_graphdef, jax.lax.stop_gradient(teacher_params)) if teacher_graphdef is not None
                   else nnx.merge(graphdef, combine(frozen, jax.lax.stop_gradient(teacher_params))))
        t_hidden = jax.lax.stop_gradient(
            completion_hidden(teacher, mb["teacher_tokens"], mb["teacher_mask"], n))
        t_head = jax.lax.stop_gradient(teacher.head_weights())
        if t_head.shape[1] != s_head.shape[1]:  # embedding tables padded differently: the shared ids only
            vocab = min(t_head.shape[1], s_head.shape[1])
            s_head, t_head = s_head[:, :vocab], t_head[:, :vocab]
    stats = losses.chunked_token_stats(
        s_hidden, s_head, targets, t_hidden, t_head, chunk_size=sc.chunk_size, kind=sc.loss_kind,
        beta=sc.beta, top_k=sc.top_k or None, top_k_support=sc.top_k_support, temperature=sc.temperature)

    cmask = mb["completion_mask"].astype(jnp.float32)
    per_token, lmask = method.per_token_loss(stats, cmask, sc)
    weights = None
    if sc.importance_correction:
        weights = losses.importance_weights(stats["student_logp"], mb["sampler_logprobs"], lmask,
                                            sc.importance_cap)
    loss = losses.aggregate(per_token, lmask, sc.aggregation, weights, normalizer)

    sums = {"loss_tokens": jnp.sum(lmask), "completion_tokens": jnp.sum(cmask),
            "student_entropy": jnp.sum(stats["student_entropy"] * lmask),
            "student_logp": jnp.sum(stats["student_logp"] * lmask)}
    if method.distills:
        for k in ("forward_kl", "reverse_kl"):
            sums[k] = jnp.sum(stats[k] * lmask)
        sums["logprob_gap"] = jnp.sum((stats["teacher_logp"] - stats["student_logp"]) * lmask)
    if weights is not None:
        sums["is_weight_sum"] = jnp.sum(weights)
        sums["is_weight_min"] = jnp.min(weights)
        sums["is_weight_max"] = jnp.max(weights)
    return loss, jax.lax.stop_gradient(sums)


def _global_normalizer(batch, sc: StepConfig):
    method = methods.get(sc.method)
    if sc.aggregation == "sequence_mean":
        return method.rows_that_count(batch["completion_mask"])
    mask = method.loss_mask(batch["completion_mask"].astype(jnp.float32), sc.skip_first_tokens)
    return jnp.maximum(jnp.sum(mask), 1.0)


def _tree_norm(tree) -> jax.Array:
    return optax.global_norm(jax.tree.map(lambda x: x.astype(jnp.float32), tree))


def make_train_step(graphdef: Any, sc: StepConfig, tx: optax.GradientTransformation,
                    lr_schedule: optax.Schedule | None = None, teacher_graphdef: Any = None):
    """Returns the un-jitted step; `jit_train_step` adds shardings and donation.
    With `lr_schedule`, metrics include the learning rate used at this step. `teacher_graphdef`: the
    external teacher's model (teacher.kind=external; its params are state.external_teacher)."""
    if (sc.teacher_kind == "external") != (teacher_graphdef is not None):
        raise ValueError("teacher.kind=external needs the teacher's graphdef, and only it does")
    external = teacher_graphdef is not None

    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        params = state.params
        teacher_params = (state.external_teacher if external else
                          params if sc.teacher_kind == "live" else state.teacher_params)
        normalizer = _global_normalizer(batch, sc)
        grad_fn = jax.value_and_grad(_micro_loss, has_aux=True)

        def loss_and_grad(mb):
            return grad_fn(params, teacher_params, mb, graphdef, sc, normalizer, state.frozen_params, teacher_graphdef)
        B = batch["completion_mask"].shape[0]
        if B % sc.micro_batches:
            raise ValueError(f"batch of {B} is not divisible by batch.micro_batches={sc.micro_batches}")

        if sc.micro_batches == 1:
            (loss, sums), grads = loss_and_grad(batch)
        else:
            micro = jax.tree.map(lambda x: x.reshape(sc.micro_batches, B // sc.micro_batches, *x.shape[1:]),
                                 batch)

            def accumulate(carry, mb):
                (l, s), g = loss_and_grad(mb)
                c_loss, c_sums, c_grads = carry
                c_sums = {k: (jnp.minimum(c_sums[k], s[k]) if k.endswith("_min") else
                              jnp.maximum(c_sums[k], s[k]) if k.endswith("_max") else c_sums[k] + s[k])
                          for k in s}
                return (c_loss + l, c_sums, jax.tree.map(jnp.add, c_grads, g)), None

            first = jax.tree.map(lambda x: x[0], micro)
            (loss, sums), grads = loss_and_grad(first)
            rest = jax.tree.map(lambda x: x[1:], micro)
            (loss, sums, grads), _ = jax.lax.scan(accumulate, (loss, sums, grads), rest)

        updates, opt_state = tx.update(grads, state.opt_state, params)
        new_params = optax.apply_updates(params, updates)
        if methods.get(sc.method).judged:  # nothing accepted: no update at all. Adam's momentum from
            # an earlier accepted batch would otherwise keep moving the weights for ~50 empty steps.
            keep = sums["loss_tokens"] > 0
            new_params, opt_state, updates = (
                jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, old)
                for new, old in ((new_params, params), (opt_state, state.opt_state),
                                 (updates, jax.tree.map(jnp.zeros_like, updates))))
        if sc.teacher_kind == "ema":
            a = sc.ema_alpha
            new_teacher = jax.tree.map(
                lambda t, p: (a * p.astype(jnp.float32) + (1 - a) * t.astype(jnp.float32)).astype(t.dtype),
                state.teacher_params, new_params)
        else:
            new_teacher = state.teacher_params

        tokens = jnp.maximum(sums["loss_tokens"], 1.0)
        metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), "update_norm": _tree_norm(updates),
                   "param_norm": _tree_norm(new_params),  # the host refuses to save non-finite weights
                   "loss_tokens": sums["loss_tokens"], "completion_tokens": sums["completion_tokens"],
                   "student_entropy": sums["student_entropy"] / tokens,
                   "student_logp": sums["student_logp"] / tokens}
        if lr_schedule is not None:
            metrics["lr"] = lr_schedule(state.step)
        if methods.get(sc.method).distills:
            for k in ("forward_kl", "reverse_kl", "logprob_gap"):
                metrics[k] = sums[k] / tokens
            if new_teacher is not None:
                metrics["teacher_student_distance"] = _tree_norm(
                    jax.tree.map(lambda t, p: t.astype(jnp.float32) - p.astype(jnp.float32), new_teacher,
                                 new_params))
        if sc.importance_correction:
            metrics["is_weight_mean"] = sums["is_weight_sum"] / B
            metrics["is_weight_min"], metrics["is_weight_max"] = sums["is_weight_min"], sums["is_weight_max"]
        new_state = state.replace(step=state.step + 1, params=new_params, teacher_params=new_teacher,
                                  opt_state=opt_state)
        return new_state, metrics

    return train_step


def jit_train_step(train_step, state_shardings=None, batch_shardings=None, metrics_sharding=None):
    """jit with explicit shardings; the state is donated (updated in place)."""
    if state_shardings is None:
        return jax.jit(train_step, donate_argnums=(0,))
    return jax.jit(train_step, in_shardings=(state_shardings, batch_shardings),
                   out_shardings=(state_shardings, metrics_sharding), donate_argnums=(0,))

