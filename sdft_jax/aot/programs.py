"""What a run compiles, as shapes: the state and inputs as ShapeDtypeStructs carrying the run's
shardings over a target's devices (no weights, no data), and the run's own jitted programs
(step.make_step, step.phase_step's sampler, the held-out NLL evaluators) to lower with them.
Built by the same functions the training program uses (resolve.ModelOptions, step.run_shardings,
train_state.abstract_state), so what compiles here is what a run would compile."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from sdft_jax import sharding as shd
from sdft_jax.runtime.cache import cache_root
from sdft_jax.aot.known_models import HF_CONFIGS, known_config
from sdft_jax.model import abstract_model, param_shardings
from sdft_jax.model.config import read_hf_config
from sdft_jax.model.handle import model_config
from sdft_jax.model.lora import combine, split_adapters
from sdft_jax.model.source import kind as model_path_kind
from sdft_jax.resolve import ConfigError, resolve
from sdft_jax.core import methods
from sdft_jax.core.step import make_step, phase_step, run_shardings
from sdft_jax.core.train_state import abstract_state, learning_rate_schedule, make_optimizer
from sdft_jax.core.update import StepConfig
from sdft_jax.eval.heldout_nll import nll_program


@dataclasses.dataclass
class Program:
    name: str
    jitted: Any
    args: tuple
    model_flops: float  # the whole mesh's dense-matmul FLOPs per call (Method.flops)
    decode_bytes: float  # per chip: decode-weight reads of the rollout's loop (a bandwidth floor), 0 without


@dataclasses.dataclass
class Plan:
    """The run's shapes on the target: settings, mesh, model, state."""
    settings: Any
    mesh: Any
    model_cfg: Any
    model_source: str  # the config.json the shapes came from
    n_params: int
    programs: list[Program]
    teacher_note: str = ""  # teacher.kind=external: the teacher's architecture and size


def model_folder(path: str, key: str = "model.path") -> tuple[str, str]:
    """(a folder holding the model's config.json, where its shapes come from). A folder that is not
    here, known by name, gets its config.json from known_models.HF_CONFIGS (weights are never read)."""
    if model_path_kind(path) == "local" and os.path.isfile(os.path.join(os.path.expanduser(path), "config.json")):
        return os.path.expanduser(path), os.path.join(path, "config.json")
    hf = known_config(path)
    if hf is None:
        raise ConfigError(f"{key}={path!r}: no config.json there and not one of the known checkpoints "
                          f"({', '.join(HF_CONFIGS)}); pass --config.{key}=FOLDER holding its config.json")
    folder = os.path.join(cache_root(), "aot_models", os.path.basename(path.rstrip("/").split("@")[0]))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(hf, f, indent=1)
    return folder, f"sdft_jax/aot/known_models.py ({os.path.basename(folder)})"


def _with_sharding(tree, shardings):
    return jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), tree, shardings)


def build(config: ml_collections.ConfigDict, devices: list, programs: tuple[str, ...] = ("step", "sampler",
          "other_method", "evals")) -> Plan:
    """The run's programs over `devices` (a target's, see aot/targets.py), each with its abstract arguments."""
    config = ml_collections.ConfigDict(config.to_dict())  # unlocked copy: model.path may point to the table's
    config.model.path, source = model_folder(config.model.path)
    if config.teacher.kind == "external":
        config.teacher.path, teacher_source = model_folder(config.teacher.path, "teacher.path")
    num_processes = len({d.process_index for d in devices})
    settings = resolve(config, len(devices), num_processes)
    mesh = shd.make_mesh(*settings.mesh_shape, devices=devices)
    cfg = model_config(read_hf_config(config.model.path), source, **settings.model.kwargs())
    graphdef, abstract = abstract_model(cfg)
    n_params = sum(x.size for x in jax.tree.leaves(abstract_model(cfg.replace(base_quant="", lora_rank=0,
                                                                             lora_targets=()))[1]))
    p_sh = param_shardings(cfg, mesh, abstract)
    trainable, frozen = split_adapters(abstract) if cfg.lora_rank else (abstract, None)
    train_sh, frozen_sh = split_adapters(p_sh) if cfg.lora_rank else (p_sh, None)
    tx, schedule = make_optimizer(settings.optim), learning_rate_schedule(settings.optim)
    ema_dtype = (config.teacher.ema_dtype or None) if settings.step.teacher_kind == "ema" else None
    teacher_graphdef, teacher, teacher_sh = None, None, None
    if settings.step.teacher_kind == "external":  # its own shapes and sharding rules, as train.py loads it
        o = settings.model
        teacher_cfg = model_config(read_hf_config(config.teacher.path), teacher_source,
                                   dtype=settings.teacher.dtype or o.dtype, compute_dtype=o.compute_dtype,
                                   remat=o.remat, scan_layers=o.scan_layers, attention=o.attention)
        teacher_graphdef, teacher = abstract_model(teacher_cfg)
        teacher_sh = param_shardings(teacher_cfg, mesh, teacher)
    state, st_sh = abstract_state(trainable, tx, settings.step.teacher_kind, ema_dtype, train_sh, mesh, frozen,
                                  frozen_sh, teacher, teacher_sh)
    kwargs = dict(state_shardings=st_sh, teacher_graphdef=teacher_graphdef, **run_shardings(mesh, cfg, abstract))
    B, N = config.batch.prompts_per_step, settings.sampling.max_new_tokens
    Ps, Pt = settings.lengths.student_buckets()[-1], settings.lengths.teacher_buckets()[-1]  # the longest buckets
    input_sh = kwargs["input_sharding"]
    shapes = {"student_prompt": (B, Ps), "student_prompt_mask": (B, Ps), "teacher_prompt": (B, Pt),
              "teacher_prompt_mask": (B, Pt), "target": (B, N), "target_mask": (B, N)}
    key = jax.ShapeDtypeStruct((), jax.eval_shape(lambda: jax.random.key(0)).dtype, sharding=shd.replicated(mesh))
    decode = _decode_bytes(cfg, abstract, kwargs["decode_shardings"]) * N * settings.sampling.rollout_batches

    def step_program(sc: StepConfig, generations: int) -> Program:
        method = methods.get(sc.method)
        inputs = {k: jax.ShapeDtypeStruct(shapes[k], jnp.int32, sharding=input_sh) for k in method.inputs}
        jitted = make_step(graphdef, cfg, sc, settings.sampling, tx, schedule, num_generations=generations, **kwargs)
        name = f"{method.name.upper()} step" + (" (rollout + update)" if method.samples else "")
        return Program(name, jitted, (state, inputs, key), method.flops(n_params, inputs, N, generations),
                       decode if method.samples else 0.0)

    out = []
    if "step" in programs:
        out.append(step_program(settings.step, settings.num_generations))
    if "other_method" in programs:  # the baseline a comparison runs in the same loop
        other = "sdft" if settings.method.name == "sft" else "sft"
        out.append(step_program(dataclasses.replace(settings.step, method=other), 1))
    if "sampler" in programs:
        out.append(_sampler(graphdef, cfg, settings, tx, schedule, kwargs, state, shapes, input_sh, key, n_params,
                            decode))
    if "evals" in programs:
        out += _evaluators(config, settings, mesh, graphdef, state, n_params)
    note = "" if teacher is None else (
        f"; external teacher {teacher_cfg.arch} {sum(x.size for x in jax.tree.leaves(teacher)) / 1e9:.2f}B params "
        f"from {teacher_source} (frozen; its FLOPs are not in the model FLOP count; tokenizers are not compared "
        "ahead of time)")
    return Plan(settings, mesh, cfg, source, n_params, out, note)


def _sampler(graphdef, cfg, settings, tx, schedule, kwargs, state, shapes, input_sh, key, n_params, decode) -> Program:
    """The rollout alone, as log.phase_times runs it (and generation evaluators at these shapes)."""
    captured: dict[str, Callable] = {}

    def capture(name, jitted):
        captured[name] = jitted
        return jitted
    sdft = dataclasses.replace(settings.step, method="sdft")
    phase_step(graphdef, cfg, sdft, settings.sampling, tx, schedule, num_generations=settings.num_generations,
               wrap=capture, **kwargs)
    inputs = {k: jax.ShapeDtypeStruct(shapes[k], jnp.int32, sharding=input_sh) for k in methods.SDFT.inputs}
    B, Ps = shapes["student_prompt"]
    B *= settings.num_generations
    N = settings.sampling.max_new_tokens
    return Program(f"sampler ({B} x {Ps} + {N} new)", captured["sampler"], (state, inputs, key),
                   2.0 * n_params * B * (Ps + N), decode)


def _evaluators(config, settings, mesh, graphdef, state, n_params) -> list[Program]:
    """The held-out NLL evaluators the config declares active, at their largest shapes."""
    out = []
    for name, spec in (config.get("evals") or {}).items():
        if spec.get("type") != "heldout_nll" or not (spec.get("split") or config.data.eval_split):
            continue
        dp = mesh.shape["data"] * mesh.shape["fsdp"]
        rows = -(-(spec.get("examples") or config.eval.examples) // dp) * dp
        teacher = spec.get("context", "student") == "teacher"
        prompt = (settings.lengths.teacher_buckets() if teacher else settings.lengths.student_buckets())[-1]
        T, N = prompt + settings.lengths.max_completion, settings.lengths.max_completion
        bsh = shd.batch_sharding(mesh, 2)
        batch = {k: jax.ShapeDtypeStruct((rows, n), jnp.int32, sharding=bsh)
                 for k, n in (("tokens", T), ("mask", T), ("target_mask", N))}
        trained = state.teacher_params if teacher and state.teacher_params is not None else state.params
        weights = combine(state.frozen_params, trained)
        out.append(Program(f"evaluator {name} (heldout_nll, {rows} x {T})", nll_program(graphdef, N, mesh), (weights, batch),
                           2.0 * n_params * rows * T, 0.0))
    return out


def _decode_bytes(cfg, abstract, decode_shardings) -> float:
    """Bytes of weights one chip reads per decoded token: its decode shard of every parameter, floats
    in the compute dtype (the rollout casts them once), quantized codes as stored."""
    compute = jnp.dtype(cfg.dtype).itemsize

    def one(leaf, sharding):
        n = 1
        for d in sharding.shard_shape(leaf.shape):
            n *= d
        return n * (compute if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf.dtype.itemsize)
    return float(sum(jax.tree.leaves(jax.tree.map(one, abstract, decode_shardings))))
