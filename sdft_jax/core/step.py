"""The program run once per optimizer step: (state, inputs, key) -> (state, metrics, rollout).

For a method that samples (SDFT) the program holds everything an optimizer step does: the weights
cast for decoding and gathered over `fsdp` once (sharding.DECODE_RULES; the decode loop then runs
without collectives on weights), the rollout (prefill + while_loop decode), the assembly of the
student and teacher sequences, and the update (teacher forward under stop-gradient, student
forward/backward, AdamW, EMA: core/update.py). For SFT the same signature without the rollout. The
method's record (core/methods.py) says which inputs, whether to roll out and how to assemble the
batch. `num_generations` > 1 repeats each prompt row that many times inside the program (TRL's
rollouts per prompt).

`phase_step` is the diagnostic form (`log.phase_times`): the same computation as three programs
(generate, assemble, train step), blocking between them to time the rollout and the update.
"""
from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jax.sharding import NamedSharding, PartitionSpec as P

from sdft_jax import sharding as shd
from sdft_jax.core import methods
from sdft_jax.core.methods import repeat_rows
from sdft_jax.core.sampler import SamplingConfig, build_generate
from sdft_jax.core.update import StepConfig, make_train_step
from sdft_jax.model import param_shardings


def run_shardings(mesh, model_cfg, params) -> dict:
    """make_step / phase_step's sharding arguments for a run on `mesh` (params: arrays or shapes):
    the decode weights gathered over fsdp, the KV cache and inputs over the batch axes."""
    return dict(cache_sharding=NamedSharding(mesh, P(None, shd.BATCH_AXES, None, "tensor", None)),
                decode_shardings=param_shardings(model_cfg, mesh, params, shd.DECODE_RULES),
                input_sharding=shd.batch_sharding(mesh, 1), metrics_sharding=shd.replicated(mesh))


def make_rollout(graphdef: Any, model_cfg, sampling: SamplingConfig, num_generations: int = 1, cache_sharding=None,
                 decode_shardings=None):
    """(state, inputs, key) -> the student's rollout: its weights cast for decoding (gathered over
    fsdp when decode_shardings are given), each prompt row `num_generations` times."""
    generate = build_generate(graphdef, model_cfg, sampling, cache_sharding=cache_sharding)

    def rollout(state, inputs, key):
        weights = state.student_weights()
        if decode_shardings is not None:
            weights = jax.lax.with_sharding_constraint(weights, decode_shardings)
        return generate(weights, repeat_rows(inputs["student_prompt"], num_generations),
                        repeat_rows(inputs["student_prompt_mask"], num_generations), key)
    return rollout


def _parts(graphdef, model_cfg, sc: StepConfig, sampling: SamplingConfig, tx, lr_schedule, num_generations: int,
           cache_sharding, decode_shardings, teacher_graphdef=None):
    """(rollout(state, inputs, key), assemble(inputs, rollout), train_step): the pieces both forms share."""
    rollout = make_rollout(graphdef, model_cfg, sampling, num_generations, cache_sharding, decode_shardings)
    train_step = make_train_step(graphdef, sc, tx, lr_schedule, teacher_graphdef)

    def assemble(inputs, rolled):
        return methods.get(sc.method).assemble(inputs, rolled, num_generations)

    return rollout, assemble, train_step


def make_step(graphdef: Any, model_cfg, sc: StepConfig, sampling: SamplingConfig, tx, lr_schedule=None, *,
              num_generations: int = 1, cache_sharding=None, decode_shardings=None, state_shardings=None,
              input_sharding=None, metrics_sharding=None, teacher_graphdef=None):
    """The fused step, jitted with the state donated. Returns (state, metrics, rollout or None).
    `teacher_graphdef`: an external teacher's model (its params: state.external_teacher)."""
    rollout, assemble, train_step = _parts(graphdef, model_cfg, sc, sampling, tx, lr_schedule, num_generations,
                                           cache_sharding, decode_shardings, teacher_graphdef)

    samples = methods.get(sc.method).samples

    def step(state, inputs, key):
        rolled = rollout(state, inputs, key) if samples else None
        state, metrics = train_step(state, assemble(inputs, rolled))
        return state, metrics, rolled

    if state_shardings is None:
        return jax.jit(step, donate_argnums=(0,))
    step = shd.traced_under(input_sharding.mesh, step)
    in_sh = {k: input_sharding for k in methods.get(sc.method).inputs}
    return jax.jit(step, in_shardings=(state_shardings, in_sh, None),
                   out_shardings=(state_shardings, metrics_sharding, input_sharding if samples else None),
                   donate_argnums=(0,))


def phase_step(graphdef: Any, model_cfg, sc: StepConfig, sampling: SamplingConfig, tx, lr_schedule=None, *,
               num_generations: int = 1, cache_sharding=None, decode_shardings=None, state_shardings=None,
               input_sharding=None, metrics_sharding=None, wrap=lambda name, fn: fn, judge=None, teacher_graphdef=None):
    """The same step as three programs; metrics gain time_generate and time_train_step (seconds).
    `wrap(name, jitted)` wraps the sampler and the train step (train.py checks their memory).
    A judged method (rejection) runs only in this form: between the programs the host calls
    `judge(inputs, rollout) -> accepted [rows] (0/1)`, the rejected rows' completion mask is zeroed,
    and metrics gain accepted_fraction."""
    rollout, assemble, train_step = _parts(graphdef, model_cfg, sc, sampling, tx, lr_schedule, num_generations,
                                           cache_sharding, decode_shardings, teacher_graphdef)
    rollout_fn = wrap("sampler", jax.jit(rollout))
    # The batch where the update expects it (a constant such as SFT's zero sampler_logprobs would be replicated).
    assemble_fn = jax.jit(assemble) if input_sharding is None else jax.jit(assemble, out_shardings=input_sharding)
    if state_shardings is None:
        step_fn = jax.jit(train_step, donate_argnums=(0,))
    else:
        step_fn = jax.jit(shd.traced_under(input_sharding.mesh, train_step), in_shardings=(state_shardings, input_sharding),
                          out_shardings=(state_shardings, metrics_sharding), donate_argnums=(0,))
    step_fn = wrap(f"{sc.method.upper()} train step", step_fn)
    samples = methods.get(sc.method).samples

    def step(state, inputs, key):
        t0 = time.perf_counter()
        rolled = jax.block_until_ready(rollout_fn(state, inputs, key)) if samples else None
        judged = {}
        if judge is not None:
            accepted = np.asarray(judge(inputs, rolled), np.int32)
            judged = {"accepted_fraction": float(accepted.mean())}
            rolled = rolled._replace(mask=rolled.mask * jnp.asarray(accepted[:, None]))
        t1 = time.perf_counter()
        state, metrics = step_fn(state, assemble_fn(inputs, rolled))
        jax.block_until_ready(metrics)
        metrics = {**metrics, **judged, "time_generate": t1 - t0, "time_train_step": time.perf_counter() - t1}
        return state, metrics, rolled

    return step
