"""TrainState pytree (step, params, teacher params, optimizer state, rng, frozen base), the
optimizer, and the state's abstract shape and shardings (the teacher copy is sharded exactly like
params)."""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sdft_jax.model import param_shardings
from sdft_jax.model.lora import combine, split_adapters

TEACHER_KINDS = ("ema", "frozen", "live", "external")


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    teacher_params: Any  # EMA or frozen copy; None for the `live` teacher
    opt_state: Any
    rng: jax.Array
    # LoRA: `params` and `teacher_params` hold the adapters only, and this the base model they
    # wrap (never updated, never checkpointed: it is re-read from model.path). None = full fine-tuning.
    frozen_params: Any = None
    # teacher.kind=external: another checkpoint's whole params (its own architecture; the same
    # tokenizer), frozen and never checkpointed (re-read from teacher.path). None otherwise.
    external_teacher: Any = None

    def student_weights(self):
        """The student's full params (base + adapters with LoRA)."""
        return combine(self.frozen_params, self.params)

    def teacher_weights(self):
        """The teacher's full params in the student's architecture; None for the `live` teacher (= the
        student) and for an external one (another architecture: evaluators score the student)."""
        return None if self.teacher_params is None else combine(self.frozen_params, self.teacher_params)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    lr: float = 5e-5
    warmup_steps: int = 10
    total_steps: int = 1000
    schedule: str = "cosine"  # cosine | constant
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0


def learning_rate_schedule(oc: OptimConfig) -> optax.Schedule:
    """Linear warmup from 0 (lr is 0 at step 0, as in HF/TRL), then cosine to 0 or constant."""
    if oc.schedule not in ("cosine", "constant"):
        raise ValueError(f"optim.schedule={oc.schedule!r}; expected 'cosine' or 'constant'")
    decay_steps = max(oc.total_steps - oc.warmup_steps, 1)
    after = (optax.cosine_decay_schedule(oc.lr, decay_steps) if oc.schedule == "cosine"
             else optax.constant_schedule(oc.lr))
    if oc.warmup_steps <= 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, oc.lr, oc.warmup_steps), after], [oc.warmup_steps])


def make_optimizer(oc: OptimConfig) -> optax.GradientTransformation:
    """clip global norm -> AdamW (weight decay 0 by default) with warmup + cosine."""
    return optax.chain(
        optax.clip_by_global_norm(oc.grad_clip),
        optax.adamw(learning_rate_schedule(oc), b1=oc.b1, b2=oc.b2, eps=oc.eps, weight_decay=oc.weight_decay),
    )


def init_state(params, tx: optax.GradientTransformation, teacher_kind: str, seed: int,
               teacher_dtype: str | None = None, frozen_params=None, external_teacher=None) -> TrainState:
    """params: what trains (the adapters with LoRA, then `frozen_params` = the base).
    teacher_dtype: store the teacher copy in this dtype (default: the params' own).
    A bf16 EMA teacher barely moves: at alpha 0.01 an update smaller than half a bf16 ulp
    (~0.2% of the weight) rounds away, so the teacher stays near its initial weights until the
    student has drifted ~20% (benchmarks/precision.py measures it)."""
    if teacher_kind not in TEACHER_KINDS:
        raise ValueError(f"teacher.kind={teacher_kind!r}; expected one of {TEACHER_KINDS}")

    def teacher_copy(x):  # a separate buffer (not an alias of params): the step donates the state
        x = jnp.copy(x)
        return x.astype(teacher_dtype) if teacher_dtype and jnp.issubdtype(x.dtype, jnp.floating) else x
    teacher = None if teacher_kind in ("live", "external") else jax.tree.map(teacher_copy, params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, teacher_params=teacher,
                      opt_state=tx.init(params), rng=jax.random.key_data(jax.random.key(seed)),
                      frozen_params=frozen_params, external_teacher=external_teacher)


def state_shardings(abstract_state: TrainState, param_shardings, mesh: Mesh, frozen_shardings=None,
                    external_shardings=None) -> TrainState:
    """Params and teacher with the parameter shardings; optimizer moments follow the params they
    track (matched by shape and tree path); scalars replicated; the frozen base (LoRA) with its own."""
    replicated = NamedSharding(mesh, P())
    flat_params = {_path_key(p): s for p, s in jax.tree_util.tree_flatten_with_path(param_shardings)[0]}

    def opt_leaf(path, leaf):
        key = _path_key(path)
        for k, sh in flat_params.items():  # moments: path ends with the param's path
            if key[-len(k):] == k and len(leaf.shape) == len(sh.spec):
                return sh
        return replicated

    opt_sh = jax.tree_util.tree_map_with_path(opt_leaf, abstract_state.opt_state)
    return TrainState(step=replicated, params=param_shardings,
                      teacher_params=None if abstract_state.teacher_params is None else param_shardings,
                      opt_state=opt_sh, rng=replicated, frozen_params=frozen_shardings,
                      external_teacher=external_shardings)


def build_state(model, mesh: Mesh, tx: optax.GradientTransformation, teacher_kind: str, seed: int,
                teacher_dtype: str | None = None, teacher=None) -> tuple[TrainState, TrainState]:
    """(the run's first TrainState, placed on `mesh`, and its shardings): what train.py, the benchmarks
    and the tests start from. With LoRA (model.config.lora_rank) the adapters train over the frozen base;
    `teacher`: the external teacher's model (teacher.kind=external), sharded by its own config's rules."""
    lora = bool(model.config.lora_rank)
    trainable, frozen = split_adapters(model.params) if lora else (model.params, None)
    state = init_state(trainable, tx, teacher_kind, seed, teacher_dtype, frozen,
                       None if teacher is None else teacher.params)
    p_sh = param_shardings(model.config, mesh, model.params)
    train_sh, frozen_sh = split_adapters(p_sh) if lora else (p_sh, None)
    ext_sh = None if teacher is None else param_shardings(teacher.config, mesh, teacher.params)
    shardings = state_shardings(state, train_sh, mesh, frozen_sh, ext_sh)
    return jax.device_put(state, shardings), shardings


def abstract_state(params, tx: optax.GradientTransformation, teacher_kind: str, teacher_dtype: str | None,
                   param_shardings, mesh: Mesh, frozen_params=None, frozen_shardings=None, external_teacher=None,
                   external_shardings=None):
    """(the state init_state would build, as ShapeDtypeStructs carrying their shardings, the shardings):
    nothing is allocated, so a 7B's state can be described (and compiled for) on a small machine.
    params / frozen_params / external_teacher may be ShapeDtypeStructs."""
    shapes = jax.eval_shape(lambda p, f, e: init_state(p, tx, teacher_kind, 0, teacher_dtype, f, e), params,
                            frozen_params, external_teacher)
    shardings = state_shardings(shapes, param_shardings, mesh, frozen_shardings, external_shardings)
    with_sharding = jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), shapes, shardings)
    return with_sharding, shardings


def _path_key(path) -> tuple:
    return tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", None))) for k in path)
