"""A training method as one record: what the step reads, whether it samples, how it assembles the
batch, its per-token loss and its FLOP count. The step, the loop and resolve ask the record; adding a
method adds a record, not branches.

    sdft:      the student samples y from its own context; the teacher (the same model with the
               demonstration in context) scores the same y; per-token divergence student -> teacher.
    sft:       the demonstration is the completion; per-token cross-entropy (no rollout, no teacher).
    offline:   offline self-distillation (the paper's ablation): before the first step the initial
               model, demonstration in context, samples the completions (programs/offline.py); then
               SFT of the student context on them.
    rejection: on-policy SFT (rejection sampling / RFT): the student samples as SDFT does, the host
               scores each completion with the task's scorer, and the update is SFT on the accepted
               rows only (two programs per step: the rollout, then the update; step.phase_step).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp

from sdft_jax.core import losses


def repeat_rows(x, n: int):
    """Each row n times in a row (num_generations rollouts per prompt)."""
    return x if n == 1 else jnp.repeat(x, n, axis=0)


def sequences(student_prompt, student_prompt_mask, teacher_prompt, teacher_prompt_mask, completion,
              completion_mask, sampler_logprobs=None) -> dict:
    """The step's batch: left-padded prompts followed by the (right-padded) completion, for the student
    context and, when given, the teacher context (both see the SAME completion)."""
    completion_mask = completion_mask.astype(jnp.int32)
    batch = {
        "student_tokens": jnp.concatenate([student_prompt, completion], axis=1).astype(jnp.int32),
        "student_mask": jnp.concatenate([student_prompt_mask, completion_mask], axis=1).astype(jnp.int32),
        "completion_mask": completion_mask,
        "sampler_logprobs": (jnp.zeros(completion.shape, jnp.float32) if sampler_logprobs is None
                             else sampler_logprobs.astype(jnp.float32)),
    }
    if teacher_prompt is not None:
        batch["teacher_tokens"] = jnp.concatenate([teacher_prompt, completion], axis=1).astype(jnp.int32)
        batch["teacher_mask"] = jnp.concatenate([teacher_prompt_mask, completion_mask], axis=1).astype(jnp.int32)
    return batch


def _sdft_batch(inputs: dict, rolled, g: int) -> dict:
    return sequences(repeat_rows(inputs["student_prompt"], g), repeat_rows(inputs["student_prompt_mask"], g),
                     repeat_rows(inputs["teacher_prompt"], g), repeat_rows(inputs["teacher_prompt_mask"], g),
                     rolled.tokens, rolled.mask, rolled.model_logprobs)


def _sft_batch(inputs: dict, rolled, g: int) -> dict:
    sp, sm = repeat_rows(inputs["student_prompt"], g), repeat_rows(inputs["student_prompt_mask"], g)
    return sequences(sp, sm, None, None, repeat_rows(inputs["target"], g), repeat_rows(inputs["target_mask"], g))


def _divergence(stats: dict, cmask, sc) -> tuple:
    """SDFT: the divergence to the teacher (or the sampled-token estimator) after the skipped tokens."""
    lmask = losses.loss_mask(cmask, sc.skip_first_tokens)
    if sc.loss_kind == "sampled_token":
        return losses.sampled_token_loss(stats["student_logp"], stats["teacher_logp"]), lmask
    return stats["divergence"], lmask


def _rollout_sft_batch(inputs: dict, rolled, g: int) -> dict:
    """The student's own completions as SFT targets (rejected rows arrive with their mask zeroed)."""
    sp, sm = repeat_rows(inputs["student_prompt"], g), repeat_rows(inputs["student_prompt_mask"], g)
    return sequences(sp, sm, None, None, rolled.tokens, rolled.mask)


def _cross_entropy(stats: dict, cmask, sc) -> tuple:
    return -stats["student_logp"], cmask


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    inputs: tuple[str, ...]  # the batch keys the step reads (the loop sends only these)
    samples: bool  # the step rolls the student out; the rollout is the completion
    distills: bool  # a teacher forward scores the completion (teacher metrics, EMA distance)
    skips_first_tokens: bool  # loss.skip_first_tokens applies
    # (inputs, rollout or None, generations per prompt) -> the step's batch (sequences())
    assemble: Callable[[dict, object, int], dict]
    # (token stats, completion mask, StepConfig) -> (per-token loss, the mask that counts)
    per_token_loss: Callable[[dict, object, object], tuple]
    targets_from_teacher: bool = False  # SFT targets sampled once from the teacher context (offline)
    judged: bool = False  # the host scores each rollout; only accepted rows train (rejection)

    def rows_that_count(self, cmask):
        """sequence_mean's denominator: every row, or for a judged method the rows that carry a loss
        token (the accepted ones), so its update is SFT on the accepted rows alone."""
        if self.judged:
            return jnp.maximum(jnp.sum(jnp.any(cmask > 0, axis=-1).astype(jnp.float32)), 1.0)
        return jnp.asarray(cmask.shape[0], jnp.float32)

    def loss_mask(self, cmask, skip_first_tokens: int):
        return losses.loss_mask(cmask, skip_first_tokens) if self.skips_first_tokens else cmask

    def flops(self, n_params: int, shapes: dict, new_tokens: int, generations: int) -> float:
        """Dense-matmul FLOPs of one step (2 per parameter per token forward, 4 backward; attention
        ignored): the student's forward/backward, plus the rollout's decode and the teacher's forward
        when the method has them. `shapes`: the inputs' shapes (or arrays)."""
        B, Ps = shapes["student_prompt"].shape[0] * generations, shapes["student_prompt"].shape[1]
        N = new_tokens  # completions (and SFT targets) are padded to sampling.max_new_tokens
        total = 6 * n_params * B * (Ps + N)
        if self.distills:
            total += 2 * n_params * B * (shapes["teacher_prompt"].shape[1] + N)
        if self.samples:
            total += 2 * n_params * B * N
        return float(total)


SDFT = Method("sdft", ("student_prompt", "student_prompt_mask", "teacher_prompt", "teacher_prompt_mask"),
              samples=True, distills=True, skips_first_tokens=True, assemble=_sdft_batch, per_token_loss=_divergence)
SFT = Method("sft", ("student_prompt", "student_prompt_mask", "target", "target_mask"),
             samples=False, distills=False, skips_first_tokens=False, assemble=_sft_batch,
             per_token_loss=_cross_entropy)
OFFLINE = dataclasses.replace(SFT, name="offline", targets_from_teacher=True)
REJECTION = Method("rejection", ("student_prompt", "student_prompt_mask", "index"), samples=True, distills=False,
                   skips_first_tokens=False, assemble=_rollout_sft_batch, per_token_loss=_cross_entropy, judged=True)
METHODS = {m.name: m for m in (SDFT, SFT, OFFLINE, REJECTION)}


def get(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"method={name!r}; expected one of {', '.join(METHODS)}")
    return METHODS[name]
