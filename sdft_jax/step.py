"""One jitted program per optimizer step: (state, inputs, key) -> (state, metrics, rollout).

For SDFT the program holds everything an optimizer step does: the weights cast for decoding and
gathered over `fsdp` once (sharding.DECODE_RULES; the decode loop then runs without collectives
on weights), the rollout (prefill + while_loop decode), the assembly of the student and teacher
sequences, and the train step (teacher forward under stop-gradient, student forward/backward,
AdamW, EMA). For SFT the same signature without the rollout. `num_generations` > 1 repeats each
prompt row that many times inside the program (TRL's rollouts per prompt).

`phase_step` is the diagnostic form (`log.phase_times`): the same computation as three programs
(generate, assemble, train step), blocking between them to time the rollout and the update.
"""
from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp

from jax.sharding import NamedSharding, PartitionSpec as P

from sdft_jax import sharding as shd
from sdft_jax.model import param_shardings
from sdft_jax.sampler import SamplingConfig, build_generate
from sdft_jax.train_step import StepConfig, make_train_step, sdft_batch

INPUTS = {"sdft": ("student_prompt", "student_prompt_mask", "teacher_prompt", "teacher_prompt_mask"),
          "sft": ("student_prompt", "student_prompt_mask", "target", "target_mask")}


def run_shardings(mesh, model_cfg, params) -> dict:
    """make_step / phase_step's sharding arguments for a run on `mesh` (params: arrays or shapes):
    the decode weights gathered over fsdp, the KV cache and inputs over the batch axes."""
    return dict(cache_sharding=NamedSharding(mesh, P(None, shd.BATCH_AXES, None, "tensor", None)),
                decode_shardings=param_shardings(model_cfg, mesh, params, shd.DECODE_RULES),
                input_sharding=shd.batch_sharding(mesh, 1), metrics_sharding=shd.replicated(mesh))


def _repeat(x, n: int):
    return x if n == 1 else jnp.repeat(x, n, axis=0)


def _parts(graphdef, model_cfg, sc: StepConfig, sampling: SamplingConfig, tx, lr_schedule, num_generations: int,
           cache_sharding, decode_shardings):
    """(rollout(state, inputs, key), assemble(inputs, rollout), train_step): the pieces both forms share."""
    generate = build_generate(graphdef, model_cfg, sampling, cache_sharding=cache_sharding)
    train_step = make_train_step(graphdef, sc, tx, lr_schedule)

    def rollout(state, inputs, key):
        weights = state.student_weights()
        if decode_shardings is not None:
            weights = jax.lax.with_sharding_constraint(weights, decode_shardings)
        return generate(weights, _repeat(inputs["student_prompt"], num_generations),
                        _repeat(inputs["student_prompt_mask"], num_generations), key)

    def assemble(inputs, rolled):
        g = num_generations
        sp, sm = _repeat(inputs["student_prompt"], g), _repeat(inputs["student_prompt_mask"], g)
        if sc.method == "sft":
            return sdft_batch(sp, sm, None, None, _repeat(inputs["target"], g), _repeat(inputs["target_mask"], g))
        return sdft_batch(sp, sm, _repeat(inputs["teacher_prompt"], g), _repeat(inputs["teacher_prompt_mask"], g),
                          rolled.tokens, rolled.mask, rolled.model_logprobs)

    return rollout, assemble, train_step


def make_step(graphdef: Any, model_cfg, sc: StepConfig, sampling: SamplingConfig, tx, lr_schedule=None, *,
              num_generations: int = 1, cache_sharding=None, decode_shardings=None, state_shardings=None,
              input_sharding=None, metrics_sharding=None):
    """The fused step, jitted with the state donated. Returns (state, metrics, rollout or None)."""
    rollout, assemble, train_step = _parts(graphdef, model_cfg, sc, sampling, tx, lr_schedule, num_generations,
                                           cache_sharding, decode_shardings)

    def step(state, inputs, key):
        rolled = rollout(state, inputs, key) if sc.method == "sdft" else None
        state, metrics = train_step(state, assemble(inputs, rolled))
        return state, metrics, rolled

    if state_shardings is None:
        return jax.jit(step, donate_argnums=(0,))
    step = shd.traced_under(input_sharding.mesh, step)
    in_sh = {k: input_sharding for k in INPUTS[sc.method]}
    return jax.jit(step, in_shardings=(state_shardings, in_sh, None),
                   out_shardings=(state_shardings, metrics_sharding, input_sharding if sc.method == "sdft" else None),
                   donate_argnums=(0,))


def phase_step(graphdef: Any, model_cfg, sc: StepConfig, sampling: SamplingConfig, tx, lr_schedule=None, *,
               num_generations: int = 1, cache_sharding=None, decode_shardings=None, state_shardings=None,
               input_sharding=None, metrics_sharding=None, wrap=lambda name, fn: fn):
    """The same step as three programs; metrics gain time_generate and time_train_step (seconds).
    `wrap(name, jitted)` wraps the sampler and the train step (train.py checks their memory)."""
    rollout, assemble, train_step = _parts(graphdef, model_cfg, sc, sampling, tx, lr_schedule, num_generations,
                                           cache_sharding, decode_shardings)
    rollout_fn, assemble_fn = wrap("sampler", jax.jit(rollout)), jax.jit(assemble)
    if state_shardings is None:
        step_fn = jax.jit(train_step, donate_argnums=(0,))
    else:
        step_fn = jax.jit(shd.traced_under(input_sharding.mesh, train_step), in_shardings=(state_shardings, input_sharding),
                          out_shardings=(state_shardings, metrics_sharding), donate_argnums=(0,))
    step_fn = wrap(f"{sc.method.upper()} train step", step_fn)

    def step(state, inputs, key):
        t0 = time.perf_counter()
        rolled = jax.block_until_ready(rollout_fn(state, inputs, key)) if sc.method == "sdft" else None
        t1 = time.perf_counter()
        state, metrics = step_fn(state, assemble_fn(inputs, rolled))
        jax.block_until_ready(metrics)
        metrics = {**metrics, "time_generate": t1 - t0, "time_train_step": time.perf_counter() - t1}
        return state, metrics, rolled

    return step
