"""The training program: a setup in phases (mesh, model, data, state, step, checkpointer,
evaluators), then a loop of next batch -> step -> deferred metrics -> log / eval / save.

Everything numeric happens in one jitted program per optimizer step (step.py: for SDFT the
rollout, the teacher and student forwards, the update and the EMA); the host only moves data,
decides when to evaluate and save, and writes logs. The loop does not know the method.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from sdft_jax import sharding as shd
from sdft_jax.cache import local_copy
from sdft_jax.checkpoint import Checkpointer, step_folders
from sdft_jax.data import Batcher, prepare, to_global, tokenize_all
from sdft_jax.eval.evaluators import EvalContext, evaluate_all, from_config
from sdft_jax.generate import stop_token_ids
from sdft_jax.memory_check import check_fits
from sdft_jax.metrics_log import MetricsLogger, read_rows
from sdft_jax.model import load_pretrained, param_shardings
from sdft_jax.model.hf_io import save_params
from sdft_jax.model.lora import has_adapters, merged, save_peft_adapter, split_adapters
from sdft_jax.resolve import resolve
from sdft_jax.run_config import check_resume
from sdft_jax.step import INPUTS, make_step, phase_step, run_shardings
from sdft_jax.train_state import init_state, learning_rate_schedule, make_optimizer, state_shardings
from sdft_jax.workdir_lock import WorkdirLock


class TrainingDiverged(RuntimeError):
    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step  # the first step whose metrics were not finite


class NothingToTrain(ValueError):
    """Steps in a row on which no completion token carried loss: the run would export its base."""


class WorkdirError(ValueError):
    pass


# A step whose metrics break one of these is never logged, evaluated, saved or exported.
_MUST_BE_FINITE = ("loss", "grad_norm", "update_norm", "param_norm")
# This many steps in a row (or the whole run, if shorter) without a loss token stop the run.
_ZERO_LOSS_STEPS = 5


@dataclasses.dataclass
class _Pending:
    """A dispatched step whose metrics the host has not read yet."""
    step: int
    metrics: dict
    host: dict
    rollout: object
    flops: float


class Preemption:
    """SIGTERM (TPU preemption) or SIGINT (Ctrl-C) -> finish the current step, save, exit 0. A second
    Ctrl-C stops at once (KeyboardInterrupt), for a step that takes too long."""
    SIGNALS = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}

    def __init__(self):
        self.requested = ""  # the name of the signal that asked
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = self.SIGNALS[signum]

    def restore(self):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def say(msg: str) -> None:
    if jax.process_index() == 0:
        print(f"[sdft_jax] {msg}", flush=True)


def process0_first(name: str, fn: Callable):
    """Runs fn on process 0, then on the others (which find its files): no two processes write the
    same folder at once."""
    if jax.process_count() == 1:
        return fn()
    from jax.experimental import multihost_utils
    out = fn() if jax.process_index() == 0 else None
    multihost_utils.sync_global_devices(f"sdft_jax:{name}")
    return out if jax.process_index() == 0 else fn()


def flops_per_step(n_params: int, inputs: dict, method: str, new_tokens: int, generations: int) -> float:
    """Dense-matmul FLOPs (2 per parameter per token forward, 4 backward; attention ignored):
    rollout decode + teacher forward + student forward/backward."""
    B, N = inputs["student_prompt"].shape[0] * generations, new_tokens
    student = 6 * n_params * B * (inputs["student_prompt"].shape[1] + N)
    if method == "sft":
        return float(student)
    return float(student + 2 * n_params * B * (inputs["teacher_prompt"].shape[1] + N) + 2 * n_params * B * N)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains per `config`; the evaluators are those `config.evals` declares."""
    settings = resolve(config, jax.device_count(), jax.process_count())
    _make_workdir(workdir)
    if jax.process_index() != 0:
        return _train(config, workdir, settings)
    with WorkdirLock(workdir, say):
        return _train(config, workdir, settings)


def _make_workdir(workdir: str) -> None:
    try:
        epath.Path(workdir).mkdir(parents=True, exist_ok=True)
        if "://" not in workdir and not os.access(workdir, os.W_OK):
            raise PermissionError(f"{workdir} is not writable")
    except (OSError, FileExistsError) as e:
        raise WorkdirError(f"--workdir {workdir}: cannot write there ({e.strerror or e})") from None


@dataclasses.dataclass
class _Setup:
    """What the loop needs, built by `_setup` in phases."""
    model: object
    batcher: Batcher
    state: object
    step: Callable  # (state, inputs, key) -> (state, metrics, rollout or None)
    ckpt: Checkpointer
    evaluators: list
    logger: MetricsLogger
    key: jax.Array
    n_params: int


def _train(config, workdir: str, settings) -> dict:
    # Before anything loads: a resume with other settings would mix two runs.
    record_changes = check_resume(config, workdir, max(step_folders(os.path.join(workdir, "checkpoints")), default=None),
                                  say, write=jax.process_index() == 0)
    mesh = shd.make_mesh(*settings.mesh_shape)
    say(f"mesh data={settings.mesh_shape[0]} fsdp={settings.mesh_shape[1]} tensor={settings.mesh_shape[2]} "
        f"on {jax.device_count()} {jax.devices()[0].platform} devices, {jax.process_count()} process(es)")
    s = _setup(config, workdir, settings, mesh)
    record_changes()
    try:
        return _loop(config, workdir, settings, mesh, s)
    finally:
        s.logger.close()
        s.ckpt.close()


def _setup(config, workdir: str, settings, mesh) -> _Setup:
    model, trainable, frozen = _load_model(config, settings, mesh)
    n_params = sum(x.size for x in jax.tree.leaves(model.params))
    source, data_dir, batcher = _load_data(config, workdir, settings, model.tokenizer)
    tx, schedule = make_optimizer(settings.optim), learning_rate_schedule(settings.optim)
    ema_dtype = (config.teacher.ema_dtype or None) if settings.step.teacher_kind == "ema" else None
    state = init_state(trainable, tx, settings.step.teacher_kind, config.seed, ema_dtype, frozen)
    p_sh = param_shardings(model.config, mesh, model.params)
    train_sh, frozen_sh = split_adapters(p_sh) if frozen is not None else (p_sh, None)
    st_sh = state_shardings(state, train_sh, mesh, frozen_sh)
    state = jax.device_put(state, st_sh)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=config.checkpoint.keep, say=say)
    restored = ckpt.restore_newest_readable(state, st_sh)
    if restored is not None:
        state, meta = restored
        batcher.set_state(meta["data"])
        say(f"resumed from checkpoint step {int(state.step)} (data epoch {batcher.epoch}, batch {batcher.batch})")
    step = _build_step(config, settings, model, mesh, tx, schedule, st_sh)
    evaluators = from_config(config, EvalContext(config, model, mesh, settings.lengths, source, data_dir))
    logger = MetricsLogger(workdir, config.steps, start_step=int(state.step),
                           wandb_settings=config.log.get("wandb"), run_config=config.to_dict())
    # A host copy: the state (and its rng buffer) is donated to the step.
    key = jax.random.wrap_key_data(jnp.asarray(np.asarray(state.rng.addressable_data(0))))
    return _Setup(model, batcher, state, step, ckpt, evaluators, logger, key, n_params)


def _load_model(config, settings, mesh):
    """-> (model, what trains, the frozen base or None): with LoRA only the adapters train."""
    lora_cfg = config.model.lora
    options = model_options(config, settings)
    dtype = options["dtype"]
    model = load_pretrained(config.model.path, mesh=mesh, lora_seed=config.seed, **options)
    n_params = sum(x.size for x in jax.tree.leaves(model.params))
    if dtype == "bfloat16" and not lora_cfg.rank:
        say("note: parameters are stored in bfloat16, so AdamW updates under half a bf16 ulp (~0.2% of a "
            "weight) round away; model.dtype=float32 + model.compute_dtype=bfloat16 keeps fp32 master "
            "weights (docs/PERFORMANCE.md, 'Precision')")
    say(f"model {config.model.path}: {model.config.arch}, {n_params / 1e6:.1f}M parameters, loaded in "
        f"{model.load_seconds:.1f}s")
    if lora_cfg.rank and lora_cfg.base_dtype == "bfloat16" and config.model.dtype == "float32":
        say("note: with LoRA the frozen base is stored in model.lora.base_dtype=bfloat16, not model.dtype=float32, "
            "so the forwards and the merged export are bfloat16 too; model.lora.base_dtype=float32 keeps them fp32")
    if not model.config.lora_rank:
        return model, model.params, None
    trainable, frozen = split_adapters(model.params)
    n_train = sum(x.size for x in jax.tree.leaves(trainable))
    say(f"LoRA rank {lora_cfg.rank}, alpha {lora_cfg.alpha} on {','.join(settings.lora_targets)}: "
        f"{n_train / 1e6:.2f}M trainable parameters ({100 * n_train / n_params:.2f}%)")
    return model, trainable, frozen


def model_options(config, settings) -> dict:
    """load_pretrained's options for the run's model (handle.model_config takes the same; sdft_jax.aot)."""
    lora_cfg = config.model.lora
    # LoRA: the frozen base in lora.base_dtype; int8 / nf4 quantize its projections, the rest is bf16.
    quantized = lora_cfg.rank and lora_cfg.base_dtype in ("int8", "nf4")
    dtype = ("bfloat16" if quantized else lora_cfg.base_dtype) if lora_cfg.rank else config.model.dtype
    return dict(dtype=dtype, base_quant=lora_cfg.base_dtype if quantized else "",
                compute_dtype=config.model.compute_dtype or None, remat=config.model.remat,
                scan_layers=config.model.scan_layers, lora_rank=lora_cfg.rank, lora_alpha=lora_cfg.alpha,
                lora_targets=settings.lora_targets, attention=settings.attention)


def _load_data(config, workdir: str, settings, tok):
    """-> (prepared splits, TFDS folder, Batcher of the training split)."""
    data_dir = config.data.data_dir or os.path.join(workdir, "tfds")
    data_path = local_copy(config.data.path) if config.data.path else None  # gs:// files: copied once
    source = process0_first("tfds", lambda: prepare(config.data.task, data_path, data_dir, config.data.url or None))
    if config.data.split not in source:
        raise ValueError(f"data.split={config.data.split!r} is not in the prepared splits {sorted(source)}")
    examples, stats = tokenize_all(source[config.data.split], tok, settings.lengths, config.data.teacher_template)
    say(f"data {config.data.task}/{config.data.split}: {stats.summary()}")
    if jax.process_index() == 0:
        (epath.Path(workdir) / "data_stats.json").write_text(json.dumps(stats.as_dict(), indent=2))
    batcher = Batcher(examples, config.batch.prompts_per_step, settings.lengths, _pad_id(tok), seed=config.seed,
                      shuffle=config.data.shuffle, process_index=jax.process_index(),
                      process_count=jax.process_count())
    return source, data_dir, batcher


def _pad_id(tok) -> int:
    return tok.pad_token_id if tok.pad_token_id is not None else 0


def _build_step(config, settings, model, mesh, tx, schedule, st_sh):
    """The fused step (default), or with log.phase_times its three-program diagnostic form. The
    first call of each program compiles it and checks that it fits before running it."""
    sampling = dataclasses.replace(settings.sampling, stop_ids=stop_token_ids(model.path, model.tokenizer),
                                   pad_id=_pad_id(model.tokenizer))
    kwargs = dict(num_generations=settings.num_generations, state_shardings=st_sh,
                  **run_shardings(mesh, model.config, model.params))
    args = (model.graphdef, model.config, settings.step, sampling, tx, schedule)
    name = f"{settings.step.method.upper()} step"
    if config.log.phase_times:
        return phase_step(*args, **kwargs, wrap=_fits_or_stop)
    return _fits_or_stop(name + " (rollout + update)" if settings.step.method == "sdft" else name,
                         make_step(*args, **kwargs))


def _loop(config, workdir: str, settings, mesh, s: _Setup) -> dict:
    """next batch -> step -> (previous step's metrics) -> log / eval / save, until config.steps."""
    method, state, ckpt = settings.step.method, s.state, s.ckpt
    preempt = Preemption()
    clock = {"last": time.perf_counter()}  # when the previous step's metrics arrived
    no_loss = []  # the latest steps in a row without a loss token

    def complete(p: _Pending) -> dict:
        """Waits for a dispatched step, checks its loss and adds throughput figures."""
        metrics = {k: float(v) for k, v in jax.device_get(p.metrics).items()}
        now = time.perf_counter()
        bad = [f"{k} is {metrics[k]}" for k in _MUST_BE_FINITE if k in metrics and not math.isfinite(metrics[k])]
        if bad:
            good = ckpt.latest_step()
            raise TrainingDiverged(
                f"step {p.step}: {', '.join(bad)} (loss {metrics['loss']}, grad_norm {metrics.get('grad_norm')}); "
                f"stopping without saving. " + (f"The last good checkpoint is step {good} in {ckpt.directory}"
                                                if good is not None else "No checkpoint was saved before it "
                                                f"(checkpoint.every={config.checkpoint.every})"), p.step)
        no_loss[:] = no_loss + [p.step] if metrics.get("loss_tokens", 1) == 0 else []
        if len(no_loss) >= min(_ZERO_LOSS_STEPS, config.steps):
            raise NothingToTrain(
                f"steps {no_loss[0]}-{no_loss[-1]}: no completion token carried loss (loss_tokens 0), so nothing "
                f"trains; every completion ended within loss.skip_first_tokens={config.loss.skip_first_tokens} "
                f"tokens (see sampling.max_new_tokens and the model's stop tokens)")
        seconds = now - clock["last"]
        clock["last"] = now
        metrics.update(time_step=seconds, tokens_per_s=metrics["completion_tokens"] / seconds,
                       epoch=p.host["epoch"], model_tflops_per_s=p.flops / seconds / 1e12)
        if config.log.peak_flops_per_device:
            metrics["mfu"] = p.flops / seconds / (config.log.peak_flops_per_device * jax.device_count())
        return metrics

    def record(done: int, metrics: dict) -> None:
        if done % config.log.every == 0 or done == config.steps:
            s.logger.log(done, metrics)
            s.logger.progress(done, metrics)

    last, pending = {}, None
    try:
        for step in range(int(state.step), config.steps):
            host = next(s.batcher)  # prepared while the device still runs the previous step
            inputs = to_global({k: host[k] for k in INPUTS[method]}, mesh)
            state, metrics, rollout = s.step(state, inputs, jax.random.fold_in(s.key, step))
            done = step + 1
            # The previous step's metrics are read only now, with this step already queued: the
            # host logs and prepares the next batch while the device computes.
            if pending is not None:
                last = complete(pending)
                record(pending.step, last)
            flops = flops_per_step(s.n_params, inputs, method, settings.sampling.max_new_tokens,
                                    settings.num_generations)
            pending = _Pending(done, metrics, host, rollout, flops)
            sample_due = bool(config.log.samples_every and done % config.log.samples_every == 0)
            eval_due = [ev for ev in s.evaluators if _due(ev.every, done, config.steps)]
            # Read once: a SIGTERM arriving later in this iteration is served by the next one (it
            # used to be seen only at the exit check, which then claimed a save that never happened).
            stopping = preempt.requested
            save_due = done % config.checkpoint.every == 0 or done == config.steps or stopping
            if not (config.log.phase_times or sample_due or eval_due or save_due):
                continue
            # Synchronous from here: never save, evaluate or sample a step whose loss is unchecked.
            last, pending = complete(pending), None
            if sample_due:
                _log_sample(s.logger, s.model.tokenizer, done, host, rollout, s.batcher)
            for name, value in evaluate_all(eval_due, state.student_weights(), state.teacher_weights()).items():
                last[f"eval/{name}"] = value
            record(done, last)
            if save_due:
                ckpt.save(done, state, {"data": s.batcher.get_state(), "step": done})
            clock["last"] = time.perf_counter()  # evaluation and saving are not step time
            if stopping:
                say(f"{stopping}: saved checkpoint at step {done}; exiting")
                ckpt.close()
                return {"preempted": True, "signal": stopping, "step": done, **last}
        ckpt.wait()
        if not last:  # no step ran: the run had ended before (killed while exporting); its logged results
            last = _logged_metrics(workdir, int(state.step))
        export = _export(workdir, state.student_weights(), s.model, config.model.path)
        say(f"done: {config.steps} steps; student exported to {export}")
        return {"step": int(state.step), **last}
    finally:
        preempt.restore()


def _logged_metrics(workdir: str, step: int) -> dict:
    return next(({k: v for k, v in r.items() if k != "step"} for r in reversed(read_rows(workdir))
                 if r.get("step") == step), {})


def _due(every: int, done: int, steps: int) -> bool:
    """An evaluator's schedule: every `every` steps, or with every=-1 once, at the last step."""
    return done == steps if every < 0 else done % every == 0


def _fits_or_stop(name: str, jitted):
    checked = []

    def call(*args):
        if not checked:
            check_fits(name, jitted, *args)
            checked.append(True)
        return jitted(*args)
    return call


def _export(workdir: str, params, model, model_path: str) -> str:
    """The student as an HF folder in WORKDIR/export (LoRA: merged into the base, and the adapters
    alone in PEFT format in WORKDIR/export_adapter, whose base is `model_path` as the user named it:
    a hub id stays one); written locally, then copied for gs://. Tokenizer files come from the
    local folder the model was loaded from."""
    folders = {"export": lambda d: save_params(d, params, model.config, model.hf_config, source_dir=model.path)}
    if has_adapters(params):
        folders = {"export": lambda d: save_params(d, merged(params, model.config), model.config, model.hf_config,
                                                   source_dir=model.path),
                   "export_adapter": lambda d: save_peft_adapter(d, params, model.config, model_path)}
    for name, write in folders.items():
        target = epath.Path(workdir) / name
        if "://" not in workdir:  # whole or absent: written beside it, then renamed
            partial = f"{target}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            write(partial)
            if jax.process_index() == 0:
                shutil.rmtree(target, ignore_errors=True)
                os.replace(partial, target)
            continue
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            write(tmp)
            if jax.process_index() == 0:
                target.mkdir(parents=True, exist_ok=True)
                for f in os.listdir(tmp):
                    epath.Path(os.path.join(tmp, f)).copy(target / f, overwrite=True)
    return str(epath.Path(workdir) / "export")


def _log_sample(logger, tok, step, host, rollout, batcher) -> None:
    student = tok.decode(host["student_prompt"][0][host["student_prompt_mask"][0] == 1])
    teacher = tok.decode(host["teacher_prompt"][0][host["teacher_prompt_mask"][0] == 1])
    if rollout is not None:
        local = np.asarray(rollout.tokens.addressable_shards[0].data)[0]
        n = int(np.asarray(rollout.lengths.addressable_shards[0].data)[0])
        completion = tok.decode(local[:n])
    else:
        completion = tok.decode(host["target"][0][host["target_mask"][0] == 1])
    logger.text(step, "sample", f"STUDENT PROMPT:\n{student}\n\nTEACHER PROMPT:\n{teacher}\n\nCOMPLETION:\n{completion}")
