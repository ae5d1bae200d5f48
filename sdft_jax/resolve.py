"""Config -> typed, validated run settings, once, before anything compiles. Every message names
the offending key."""
from __future__ import annotations

import dataclasses

import ml_collections

from sdft_jax import sharding as shd
from sdft_jax.core import methods
from sdft_jax.core.sampler import SamplingConfig
from sdft_jax.core.train_state import OptimConfig
from sdft_jax.core.update import StepConfig
from sdft_jax.data.pipeline import Lengths
from sdft_jax.data.prompts import check_template
from sdft_jax.eval.evaluators import check_spec
from sdft_jax.eval.scorers import SCORERS
from sdft_jax.model import attention as attention_impl
from sdft_jax.model import source as model_source
from sdft_jax.model.config import LORA_TARGETS
from sdft_jax.runtime.wandb_log import MODES as WANDB_MODES


class ConfigError(ValueError):
    pass


LORA_BASE_DTYPES = ("bfloat16", "float32", "int8", "nf4")  # int8 / nf4 = QLoRA (model/quant.py)


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """load_pretrained's options for the run's model (handle.model_config takes the same): with LoRA the
    frozen base is stored in model.lora.base_dtype, and int8 / nf4 quantize its projections (QLoRA,
    the rest in bf16)."""
    dtype: str
    base_quant: str = ""  # int8 | nf4 | "" (not quantized)
    compute_dtype: str | None = None
    remat: str = ""
    scan_layers: bool = False
    lora_rank: int = 0
    lora_alpha: float = 0.0
    lora_targets: tuple[str, ...] = ()  # model.lora.targets, parsed (empty when rank is 0)
    attention: str = "xla"  # model.attention with `auto` resolved for this platform

    def kwargs(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DataSettings:
    task: str
    path: str
    url: str
    split: str
    data_dir: str  # "" = WORKDIR/tfds
    teacher_template: str
    shuffle: bool
    prompts_per_step: int


@dataclasses.dataclass(frozen=True)
class TeacherSettings:
    kind: str
    ema_dtype: str | None  # the EMA copy's storage dtype (None: the params'; only for kind=ema)
    path: str = ""  # kind=external: the teacher's checkpoint
    dtype: str = ""  # kind=external: its parameter dtype ("" = the student's)
    init_path: str = ""  # the teacher's initial weights from this checkpoint (continual anchor=base)


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    """When the loop logs, samples, checkpoints and stops."""
    steps: int
    seed: int
    checkpoint_every: int
    checkpoint_keep: int
    log_every: int
    samples_every: int
    phase_times: bool
    peak_flops_per_device: float
    wandb: object  # log.wandb (a ConfigDict: project, entity, name, mode) or None


@dataclasses.dataclass(frozen=True)
class RunSettings:
    method: methods.Method  # config.method's record
    step: StepConfig
    optim: OptimConfig
    sampling: SamplingConfig  # stop_ids / pad_id are filled in once the tokenizer is loaded
    lengths: Lengths
    mesh_shape: tuple[int, int, int]
    model: ModelOptions
    data: DataSettings
    teacher: TeacherSettings
    loop: LoopSettings
    model_path: str
    num_generations: int = 1  # sampling.num_generations: rollouts (offline: teacher completions) per prompt
    scorer: str = ""  # what judges a rollout (method=rejection): data.scorer, else data.task's

    @property
    def rollouts_per_prompt(self) -> int:
        """The step's rows per prompt: num_generations for a method that samples in the step, else 1."""
        return self.num_generations if self.method.samples else 1


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
        method = methods.get(c.method)
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
    _need(not method.skips_first_tokens or new > skip, "loss.skip_first_tokens",
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
    _need(G >= 1 and (G == 1 or method.samples or method.targets_from_teacher), "sampling.num_generations",
          f"must be >= 1 (and 1 for method={c.method}, which has no rollouts), got {G}")
    if c.teacher.kind == "external":
        path = c.teacher.get("path", "")
        _need(method.distills, "teacher.kind", f"external: method={c.method} has no teacher (sdft distils from one)")
        _need(path != "", "teacher.path", "is required with teacher.kind=external (a folder, hub id or gs:// path "
              "of a checkpoint with the student's tokenizer)")
        _need(model_source.kind(path) != "missing", "teacher.path",
              f"{path!r} is not a folder, a hub id ORG/NAME[@REVISION] or a gs:// path")
        _need(c.teacher.get("dtype", "") in ("", "float32", "bfloat16"), "teacher.dtype",
              f"must be '', float32 or bfloat16, got {c.teacher.get('dtype')!r}")
    init_path = c.teacher.get("init_path", "")
    _need(c.teacher.get("anchor", "stage") in ("stage", "base"), "teacher.anchor",
          f"must be stage or base, got {c.teacher.get('anchor')!r}")
    if init_path or c.teacher.get("anchor", "stage") == "base":
        _need(method.distills, "teacher.anchor", f"base (or teacher.init_path) needs a method with a teacher; "
              f"method={c.method} has none")
        _need(c.teacher.kind in ("ema", "frozen"), "teacher.kind", f"{c.teacher.kind} has no teacher copy to "
              f"start from another checkpoint (teacher.init_path / teacher.anchor=base need ema or frozen)")
        _need(not c.model.lora.rank, "teacher.init_path", "a LoRA teacher holds adapters over the student's own "
              "base, so it cannot start from another checkpoint; use full fine-tuning (model.lora.rank=0)")
    _need(not init_path or model_source.kind(init_path) != "missing", "teacher.init_path",
          f"{init_path!r} is not a folder, a hub id ORG/NAME[@REVISION] or a gs:// path")
    scorer = c.data.get("scorer") or c.data.task
    if method.judged:
        _need(scorer in SCORERS, "data.scorer", f"method={c.method} accepts the completions a scorer gives full "
              f"marks; {scorer!r} is not one (data.task={c.data.task!r}); set data.scorer to one of "
              f"{', '.join(sorted(SCORERS))}")
        _need(num_processes == 1, "method", f"{c.method} scores every rollout on one host; run it as one process "
              f"(got {num_processes})")
    data = DataSettings(task=c.data.task, path=c.data.path, url=c.data.url, split=c.data.split,
                        data_dir=c.data.data_dir, teacher_template=c.data.teacher_template, shuffle=c.data.shuffle,
                        prompts_per_step=c.batch.prompts_per_step)
    teacher = TeacherSettings(kind=c.teacher.kind, ema_dtype=(c.teacher.ema_dtype or None) if c.teacher.kind == "ema"
                              else None, path=c.teacher.get("path", ""), dtype=c.teacher.get("dtype", ""),
                              init_path=init_path)
    loop = LoopSettings(steps=c.steps, seed=c.seed, checkpoint_every=c.checkpoint.every,
                        checkpoint_keep=c.checkpoint.keep,
                        log_every=c.log.every, samples_every=c.log.samples_every, phase_times=c.log.phase_times,
                        peak_flops_per_device=c.log.peak_flops_per_device,
                        wandb=wandb)
    return RunSettings(method, step, optim, sampling, lengths, mesh_shape, _model_options(c, lora_targets), data,
                       teacher, loop, c.model.path, G, scorer)


def _model_options(c, lora_targets: tuple[str, ...]) -> ModelOptions:
    lora = c.model.lora
    quantized = bool(lora.rank) and lora.base_dtype in ("int8", "nf4")
    dtype = ("bfloat16" if quantized else lora.base_dtype) if lora.rank else c.model.dtype
    # The forwards' dtype picks the attention kernel: model.compute_dtype, else the stored weights'.
    try:
        attention = attention_impl.resolve(c.model.attention, c.model.compute_dtype or dtype)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return ModelOptions(dtype=dtype, base_quant=lora.base_dtype if quantized else "",
                        compute_dtype=c.model.compute_dtype or None, remat=c.model.remat,
                        scan_layers=c.model.scan_layers, lora_rank=lora.rank, lora_alpha=lora.alpha,
                        lora_targets=lora_targets, attention=attention)


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
