"""The training program: a setup in phases (mesh, model, data, state, step, checkpointer,
evaluators), then a loop of next batch -> step -> deferred metrics -> log / eval / save.

Everything numeric happens in one jitted program per optimizer step (step.py: for SDFT the
rollout, the teacher and student forwards, the update and the EMA); the host only moves data,
decides when to evaluate and save, and writes logs. The loop does not know the method: it asks
the method's record (core/methods.py) which inputs to send.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import tempfile
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from sdft_jax import sharding as shd
from sdft_jax.core.step import make_step, phase_step, run_shardings
from sdft_jax.core.train_state import build_state, learning_rate_schedule, make_optimizer
from sdft_jax.data import Batcher, prepare, to_global, tokenize_all
from sdft_jax.eval.context import EvalContext, EvalDefaults
from sdft_jax.eval.evaluators import evaluate_all, from_config
from sdft_jax.eval.judge import make_judge
from sdft_jax.model import load_pretrained
from sdft_jax.model.handle import placed_like, tokenizer_difference
from sdft_jax.model.hf_io import save_params
from sdft_jax.model.lora import has_adapters, merged, save_peft_adapter, split_adapters
from sdft_jax.model.stop_tokens import stop_token_ids
from sdft_jax.programs import offline
from sdft_jax.programs.errors import NothingToTrain, TrainingDiverged, WorkdirError
from sdft_jax.resolve import ConfigError, resolve
from sdft_jax.runtime.cache import local_copy
from sdft_jax.runtime.checkpoint import Checkpointer, step_folders
from sdft_jax.runtime.host import process0_first, say
from sdft_jax.runtime.memory_check import check_fits
from sdft_jax.runtime.metrics_log import MetricsLogger, read_rows
from sdft_jax.runtime.run_config import check_resume
from sdft_jax.runtime.workdir_lock import WorkdirLock


# A step whose metrics break one of these is never logged, evaluated, saved or exported.
_MUST_BE_FINITE = ("loss", "grad_norm", "update_norm", "param_norm")
# This many steps in a row (or the whole run, if shorter) without a loss token stop the run (a judged
# method, rejection, is told once instead: a student that solves nothing yet trains on nothing).
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
        return _loop(workdir, settings, mesh, s)
    finally:
        s.logger.close()
        s.ckpt.close()


def _setup(config, workdir: str, settings, mesh) -> _Setup:
    model = _load_model(config, settings, mesh)
    n_params = sum(x.size for x in jax.tree.leaves(model.params))
    sampling = dataclasses.replace(settings.sampling, stop_ids=stop_token_ids(model.path, model.tokenizer),
                                   pad_id=_pad_id(model.tokenizer))
    source, data_dir, batcher = _load_data(workdir, settings, model, sampling)
    tx, schedule = make_optimizer(settings.optim), learning_rate_schedule(settings.optim)
    loop, teacher_settings = settings.loop, settings.teacher
    teacher = _external_teacher(settings, model, mesh) if teacher_settings.kind == "external" else None
    state, st_sh = build_state(model, mesh, tx, teacher_settings.kind, loop.seed, teacher_settings.ema_dtype, teacher)
    if teacher_settings.init_path:
        state = _teacher_from(teacher_settings.init_path, state, settings, mesh, loop.seed)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=loop.checkpoint_keep, say=say)
    restored = ckpt.restore_newest_readable(state, st_sh)
    if restored is not None:
        state, meta = restored
        batcher.set_state(meta["data"])
        say(f"resumed from checkpoint step {int(state.step)} (data epoch {batcher.epoch}, batch {batcher.batch})")
    step = _build_step(settings, model, mesh, tx, schedule, st_sh, sampling, source, teacher)
    evaluators = from_config(config, EvalContext(EvalDefaults.of(config), model, mesh, settings.lengths, source,
                                                 data_dir))
    logger = MetricsLogger(workdir, loop.steps, start_step=int(state.step), wandb_settings=loop.wandb,
                           run_config=config.to_dict())
    # A host copy: the state (and its rng buffer) is donated to the step.
    key = jax.random.wrap_key_data(jnp.asarray(np.asarray(state.rng.addressable_data(0))))
    return _Setup(model, batcher, state, step, ckpt, evaluators, logger, key, n_params)


def _load_model(config, settings, mesh):
    """The run's model, with its LoRA adapters when configured (then only they train)."""
    lora_cfg, dtype = config.model.lora, settings.model.dtype  # the notes below explain the user's own keys
    model = load_pretrained(settings.model_path, mesh=mesh, lora_seed=settings.loop.seed, **settings.model.kwargs())
    n_params = sum(x.size for x in jax.tree.leaves(model.params))
    if dtype == "bfloat16" and not lora_cfg.rank:
        say("note: parameters are stored in bfloat16, so AdamW updates under half a bf16 ulp (~0.2% of a "
            "weight) round away; model.dtype=float32 + model.compute_dtype=bfloat16 keeps fp32 master "
            "weights (docs/PERFORMANCE.md, 'Precision')")
    say(f"model {settings.model_path}: {model.config.arch}, {n_params / 1e6:.1f}M parameters, loaded in "
        f"{model.load_seconds:.1f}s")
    if lora_cfg.rank and lora_cfg.base_dtype == "bfloat16" and config.model.dtype == "float32":
        say("note: with LoRA the frozen base is stored in model.lora.base_dtype=bfloat16, not model.dtype=float32, "
            "so the forwards and the merged export are bfloat16 too; model.lora.base_dtype=float32 keeps them fp32")
    if model.config.lora_rank:
        n_train = sum(x.size for x in jax.tree.leaves(split_adapters(model.params)[0]))
        say(f"LoRA rank {lora_cfg.rank}, alpha {lora_cfg.alpha} on {','.join(settings.model.lora_targets)}: "
            f"{n_train / 1e6:.2f}M trainable parameters ({100 * n_train / n_params:.2f}%)")
    return model


def _external_teacher(settings, student, mesh):
    """teacher.kind=external: another checkpoint (any size or architecture) that shares the student's
    tokenizer, loaded once, frozen, sharded by its own config's rules; never checkpointed."""
    path, options = settings.teacher.path, settings.model
    teacher = load_pretrained(path, mesh=mesh, dtype=settings.teacher.dtype or options.dtype,
                              compute_dtype=options.compute_dtype, remat=options.remat, scan_layers=options.scan_layers,
                              attention=options.attention)
    differ = tokenizer_difference(student.tokenizer, teacher.tokenizer)
    if differ:
        raise ConfigError(f"teacher.path={path!r}: its tokenizer differs from model.path={settings.model_path!r}'s "
                          f"({differ}); an external teacher must share the student's vocabulary and special tokens")
    n = sum(x.size for x in jax.tree.leaves(teacher.params))
    say(f"external teacher {path}: {teacher.config.arch}, {n / 1e6:.1f}M parameters, frozen, loaded in "
        f"{teacher.load_seconds:.1f}s")
    return teacher


def _teacher_from(path: str, state, settings, mesh, seed: int):
    """The teacher's initial weights from another checkpoint of the same architecture (teacher.init_path;
    a continual run with teacher.anchor=base: the model before its first stage)."""
    other = load_pretrained(path, mesh=mesh, lora_seed=seed, **settings.model.kwargs())
    teacher = placed_like(state.teacher_params, other.params)
    if teacher is None:
        raise ConfigError(f"teacher.init_path={path!r}: its parameters do not match model.path's (the teacher "
                          f"starts from a checkpoint of the same architecture and shapes)")
    say(f"teacher ({settings.step.teacher_kind}) starts from {path}")
    return state.replace(teacher_params=teacher)


def _load_data(workdir: str, settings, model, sampling):
    """-> (prepared splits, TFDS folder, Batcher of the training split). For method=offline the
    targets are the initial model's completions from the teacher context (programs/offline.py)."""
    tok = model.tokenizer
    data, loop = settings.data, settings.loop
    data_dir = data.data_dir or os.path.join(workdir, "tfds")
    data_path = local_copy(data.path) if data.path else None  # gs:// files: copied once
    source = process0_first("tfds", lambda: prepare(data.task, data_path, data_dir, data.url or None))
    if data.split not in source:
        raise ValueError(f"data.split={data.split!r} is not in the prepared splits {sorted(source)}")
    examples, stats = tokenize_all(source[data.split], tok, settings.lengths, data.teacher_template)
    say(f"data {data.task}/{data.split}: {stats.summary()}")
    counted = stats.as_dict()
    if settings.method.targets_from_teacher:
        examples, counted["offline"] = offline.with_teacher_targets(
            workdir, model, examples, sampling, settings.lengths.teacher_buckets(), data.prompts_per_step,
            settings.num_generations, loop.seed, write=jax.process_index() == 0, say=say)
    if jax.process_index() == 0:
        (epath.Path(workdir) / "data_stats.json").write_text(json.dumps(counted, indent=2))
    batcher = Batcher(examples, data.prompts_per_step, settings.lengths, _pad_id(tok), seed=loop.seed,
                      shuffle=data.shuffle, process_index=jax.process_index(),
                      process_count=jax.process_count())
    return source, data_dir, batcher


def _pad_id(tok) -> int:
    return tok.pad_token_id if tok.pad_token_id is not None else 0


def _build_step(settings, model, mesh, tx, schedule, st_sh, sampling, source, teacher=None):
    """The fused step (default), or with log.phase_times its three-program diagnostic form, which a
    judged method (rejection: the host scores each rollout) always runs. The first call of each
    program compiles it and checks that it fits before running it."""
    method = settings.method
    kwargs = dict(num_generations=settings.rollouts_per_prompt, state_shardings=st_sh,
                  teacher_graphdef=None if teacher is None else teacher.graphdef,
                  **run_shardings(mesh, model.config, model.params))
    args = (model.graphdef, model.config, settings.step, sampling, tx, schedule)
    if method.judged:
        judge = make_judge(source[settings.data.split], model.tokenizer, settings.scorer, sampling.stop_ids,
                           settings.rollouts_per_prompt)
        return phase_step(*args, **kwargs, wrap=_fits_or_stop, judge=judge)
    if settings.loop.phase_times:
        return phase_step(*args, **kwargs, wrap=_fits_or_stop)
    name = f"{method.name.upper()} step" + (" (rollout + update)" if method.samples else "")
    return _fits_or_stop(name, make_step(*args, **kwargs))


def _loop(workdir: str, settings, mesh, s: _Setup) -> dict:
    """next batch -> step -> (previous step's metrics) -> log / eval / save, until loop.steps."""
    method, loop, state, ckpt = settings.method, settings.loop, s.state, s.ckpt
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
                                                f"(checkpoint.every={loop.checkpoint_every})"), p.step)
        no_loss[:] = no_loss + [p.step] if metrics.get("loss_tokens", 1) == 0 else []
        if len(no_loss) >= min(_ZERO_LOSS_STEPS, loop.steps) and settings.method.judged:
            # Rejection sampling learns only from what the scorer accepts: a student that has not yet
            # solved the task trains on nothing. An outcome of the method, not a broken run: said once.
            if len(no_loss) == min(_ZERO_LOSS_STEPS, loop.steps):
                say(f"steps {no_loss[0]}-{no_loss[-1]}: data.scorer={settings.scorer!r} accepted none of the sampled "
                    f"completions; the updates are empty until one is accepted")
        elif len(no_loss) >= min(_ZERO_LOSS_STEPS, loop.steps):
            raise NothingToTrain(
                f"steps {no_loss[0]}-{no_loss[-1]}: no completion token carried loss (loss_tokens 0), so nothing "
                f"trains; every completion ended within loss.skip_first_tokens={settings.step.skip_first_tokens} "
                f"tokens (see sampling.max_new_tokens and the model's stop tokens)")
        seconds = now - clock["last"]
        clock["last"] = now
        metrics.update(time_step=seconds, tokens_per_s=metrics["completion_tokens"] / seconds,
                       epoch=p.host["epoch"], model_tflops_per_s=p.flops / seconds / 1e12)
        if loop.peak_flops_per_device:
            metrics["mfu"] = p.flops / seconds / (loop.peak_flops_per_device * jax.device_count())
        return metrics

    def record(done: int, metrics: dict) -> None:
        if done % loop.log_every == 0 or done == loop.steps:
            s.logger.log(done, metrics)
            s.logger.progress(done, metrics)

    last, pending = {}, None
    try:
        for step in range(int(state.step), loop.steps):
            host = next(s.batcher)  # prepared while the device still runs the previous step
            inputs = to_global({k: host[k] for k in method.inputs}, mesh)
            state, metrics, rollout = s.step(state, inputs, jax.random.fold_in(s.key, step))
            done = step + 1
            # The previous step's metrics are read only now, with this step already queued: the
            # host logs and prepares the next batch while the device computes.
            if pending is not None:
                last = complete(pending)
                record(pending.step, last)
            flops = method.flops(s.n_params, inputs, settings.sampling.max_new_tokens, settings.rollouts_per_prompt)
            pending = _Pending(done, metrics, host, rollout, flops)
            sample_due = bool(loop.samples_every and done % loop.samples_every == 0)
            eval_due = [ev for ev in s.evaluators if _due(ev.every, done, loop.steps)]
            # Read once: a SIGTERM arriving later in this iteration is served by the next one (it
            # used to be seen only at the exit check, which then claimed a save that never happened).
            stopping = preempt.requested
            save_due = done % loop.checkpoint_every == 0 or done == loop.steps or stopping
            if not (loop.phase_times or sample_due or eval_due or save_due):
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
        export = _export(workdir, state.student_weights(), s.model, settings.model_path)
        say(f"done: {loop.steps} steps; student exported to {export}")
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
            # Only process 0 clears and writes; the others take part in the gathers. (A late rmtree
            # by another process on a shared disk used to delete process 0's half-written files.)
            if jax.process_index() == 0:
                shutil.rmtree(partial, ignore_errors=True)
            write(partial)
            if jax.process_index() == 0:
                shutil.rmtree(target, ignore_errors=True)
                os.replace(partial, target)
            continue
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
