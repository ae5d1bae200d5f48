"""Config -> typed, validated run settings, once, before anything compiles. Every message names
the offending key."""
from __future__ import annotations

import dataclasses

import ml_collections

from sdft_jax import sharding as shd
from sdft_jax.data.pipeline import Lengths
from sdft_jax.data.prompts import check_template
from sdft_jax.eval.evaluators import check_spec
from sdft_jax.model import attention as attention_impl
from sdft_jax.model import source as model_source
from sdft_jax.model.config import LORA_TARGETS
from sdft_jax.sampler import SamplingConfig
from sdft_jax.train_state import OptimConfig
from sdft_jax.train_step import StepConfig
from sdft_jax.wandb_log import MODES as WANDB_MODES


class ConfigError(ValueError):
    pass


LORA_BASE_DTYPES = ("bfloat16", "float32", "int8", "nf4")  # int8 / nf4 = QLoRA (model/quant.py)


@dataclasses.dataclass(frozen=True)
class RunSettings:
    step: StepConfig
    optim: OptimConfig
    sampling: SamplingConfig  # stop_ids / pad_id are filled in once the tokenizer is loaded
    lengths: Lengths
    mesh_shape: tuple[int, int, int]
    lora_targets: tuple[str, ...] = ()  # model.lora.targets, parsed (empty when rank is 0)
    num_generations: int = 1  # sampling.num_generations: rollouts per prompt
    attention: str = "xla"  # model.attention with `auto` resolved for this platform


def _need(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def resolve(c: ml_collections.ConfigDict, num_devices: int, num_processes: int = 1) -> RunSettings:
    _need(c.steps >= 1, "steps", f"must be >= 1, got {c.steps}")
    _need(c.model.path != "", "model.path", "is required (a Hugging Face folder, hub id or gs:// path)")
    _need(model_source.kind(c.model.path) != "missing", "model.path",
          f"{c.model.path!r} is not a folder, a hub id ORG/NAME[@REVISION] or a gs:// path")
    _need(c.data.path != "" or c.data.url != "", "data.path", "is required (or data.url)")
    _need(c.model.dtype in ("float32", "bfloat16"), "model.dtype", f"must be float32 or bfloat16, got {c.model.dtype!r}")
    for key, value in (("model.compute_dtype", c.model.compute_dtype), ("teacher.ema_dtype", c.teacher.ema_dtype)):
        _need(value in ("", "float32", "bfloat16"), key, f"must be '', float32 or bfloat16, got {value!r}")
    lora_targets = _lora_targets(c.model.lora)
    try:
        check_template(c.data.teacher_template)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    try:
        step = StepConfig(
            method=c.method, loss_kind=c.loss.kind, beta=c.loss.beta, top_k=c.loss.top_k,
            top_k_support=c.loss.top_k_support, temperature=c.loss.temperature,
            skip_first_tokens=c.loss.skip_first_tokens, aggregation=c.loss.aggregation,
            chunk_size=c.loss.chunk_size, teacher_kind=c.teacher.kind, ema_alpha=c.teacher.ema_alpha,
            importance_correction=c.loss.importance_correction, importance_cap=c.loss.importance_cap,
            micro_batches=c.batch.micro_batches)
        sampling = SamplingConfig(max_new_tokens=c.sampling.max_new_tokens, temperature=c.sampling.temperature,
                                  top_k=c.sampling.top_k, top_p=c.sampling.top_p,
                                  rollout_batches=c.sampling.rollout_batches)
        optim = OptimConfig(lr=c.optim.lr, warmup_steps=c.optim.warmup_steps, total_steps=c.steps,
                            schedule=c.optim.schedule, b1=c.optim.b1, b2=c.optim.b2, eps=c.optim.eps,
                            weight_decay=c.optim.weight_decay, grad_clip=c.optim.grad_clip)
        mesh_shape = shd.resolve_mesh_shape(c.mesh.data, c.mesh.fsdp, c.mesh.tensor, num_devices)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _need(1.0 < c.data.bucket_growth <= 4.0, "data.bucket_growth", f"must be in (1, 4], got {c.data.bucket_growth}")
    _need(0.0 <= c.loss.beta <= 1.0, "loss.beta", f"must be in [0, 1] (0 = forward KL, 1 = reverse KL), got {c.loss.beta}")
    _need(0 <= c.loss.top_k, "loss.top_k", f"must be >= 0, got {c.loss.top_k}")
    _need(c.loss.temperature > 0, "loss.temperature", f"must be > 0, got {c.loss.temperature}")
    _need(c.loss.chunk_size >= 1, "loss.chunk_size", f"must be >= 1, got {c.loss.chunk_size}")
    _need(c.optim.lr > 0, "optim.lr", f"must be > 0, got {c.optim.lr}")
    wandb = c.log.get("wandb")
    _need(wandb is None or wandb.mode in WANDB_MODES, "log.wandb.mode",
          f"must be one of {', '.join(WANDB_MODES)}, got {wandb.mode if wandb else ''!r}")
    _need(c.optim.warmup_steps >= 0, "optim.warmup_steps", f"must be >= 0, got {c.optim.warmup_steps}")
    G = c.batch.prompts_per_step
    _need(G >= 1, "batch.prompts_per_step", f"must be >= 1, got {G}")
    _need(G % c.batch.micro_batches == 0, "batch.micro_batches",
          f"{c.batch.micro_batches} does not divide batch.prompts_per_step={G}")
    dp = mesh_shape[0] * mesh_shape[1]
    _need((G // c.batch.micro_batches) % dp == 0, "batch.prompts_per_step",
          f"micro-batch of {G // c.batch.micro_batches} prompts is not divisible by the data-parallel "
          f"mesh size data*fsdp={dp}")
    _need(G % c.sampling.rollout_batches == 0 and (G // c.sampling.rollout_batches) % dp == 0,
          "sampling.rollout_batches", f"{c.sampling.rollout_batches} groups of batch.prompts_per_step={G} prompts "
          f"must each be divisible by the data-parallel mesh size data*fsdp={dp}")
    _need(G % num_processes == 0, "batch.prompts_per_step", f"{G} is not divisible by {num_processes} processes")
    _need(c.checkpoint.every >= 1, "checkpoint.every", f"must be >= 1, got {c.checkpoint.every}")
    _need(c.log.every >= 1, "log.every", f"must be >= 1 (log every N steps), got {c.log.every}")
    _need(c.log.samples_every >= 0, "log.samples_every", f"must be >= 0 (0 = off), got {c.log.samples_every}")
    skip, new = c.loss.skip_first_tokens, c.sampling.max_new_tokens
    _need(skip >= 0, "loss.skip_first_tokens", f"must be >= 0, got {skip}")
    _need(c.method != "sdft" or new > skip, "loss.skip_first_tokens",
          f"{skip} >= sampling.max_new_tokens={new}: no completion token could carry SDFT loss (the first {skip} "
          f"of each completion are skipped), so the run would train nothing")
    _need(c.checkpoint.keep >= 1, "checkpoint.keep", f"must be >= 1, got {c.checkpoint.keep}")
    _need(c.eval.every >= 0, "eval.every", f"must be >= 0, got {c.eval.every}")
    for name, spec in (c.get("evals") or {}).items():
        try:
            check_spec(name, spec)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    lengths = Lengths(c.data.max_student_prompt, c.data.max_teacher_prompt, c.sampling.max_new_tokens,
                      c.data.bucket_growth)
    G = c.sampling.num_generations
    _need(G >= 1 and (G == 1 or c.method == "sdft"), "sampling.num_generations",
          f"must be >= 1 (and 1 for method=sft, which has no rollouts), got {G}")
    try:
        attention = attention_impl.resolve(c.model.attention, _compute_dtype(c))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return RunSettings(step, optim, sampling, lengths, mesh_shape, lora_targets, G, attention)


def _compute_dtype(c) -> str:
    """The forwards' dtype: model.compute_dtype, else the stored weights' (a QLoRA base computes in bf16)."""
    if c.model.compute_dtype:
        return c.model.compute_dtype
    if c.model.lora.rank:
        return "bfloat16" if c.model.lora.base_dtype in ("int8", "nf4") else c.model.lora.base_dtype
    return c.model.dtype


def _lora_targets(lora: ml_collections.ConfigDict) -> tuple[str, ...]:
    _need(lora.rank >= 0, "model.lora.rank", f"must be >= 0 (0 = no LoRA), got {lora.rank}")
    if lora.rank == 0:
        return ()
    _need(lora.alpha > 0, "model.lora.alpha", f"must be > 0, got {lora.alpha}")
    _need(lora.base_dtype in LORA_BASE_DTYPES, "model.lora.base_dtype",
          f"must be one of {', '.join(LORA_BASE_DTYPES)}, got {lora.base_dtype!r}")
    targets = tuple(t.strip() for t in lora.targets.split(",") if t.strip())
    bad = [t for t in targets if t not in LORA_TARGETS]
    _need(bool(targets) and not bad, "model.lora.targets",
          f"{', '.join(bad) or 'nothing'} is not a projection; choose among {','.join(LORA_TARGETS)}")
    return tuple(t for t in LORA_TARGETS if t in targets)
