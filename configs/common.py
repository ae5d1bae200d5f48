"""The paper's recipe as one ml_collections ConfigDict, and the helpers every `configs/*.py` shares
(big_vision's configs/common.py). main.py puts the repository on sys.path, so `from configs import
common` works from any cwd.

Canonical keys (stable; README documents them): steps, seed, method, model.path, data.*,
optim.lr, optim.warmup_steps, batch.prompts_per_step, loss.kind, loss.beta, loss.top_k,
loss.skip_first_tokens, teacher.kind, teacher.ema_alpha, sampling.temperature,
sampling.max_new_tokens, checkpoint.every, eval.every, mesh.data|fsdp|tensor.
"""
from __future__ import annotations

import os

import ml_collections

from sdft_jax.data.prompts import DEFAULT_TEACHER_TEMPLATE


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.steps = 100
    c.seed = 0
    # sdft | sft (the expert's demonstrations) | offline (SFT on the initial model's completions from the
    # teacher context, sampled once) | rejection (SFT on the student's own completions the scorer accepts)
    c.method = "sdft"
    c.program = "train"  # train | continual (config.stages) | demo: which program main runs

    c.model = ml_collections.ConfigDict(dict(
        path="",  # local HF folder
        dtype="bfloat16",  # parameter dtype
        compute_dtype="",  # "" = same as dtype
        remat="none",  # none | full | dots | dots_no_batch
        scan_layers=True,
        # The teacher and student forwards' attention kernel: auto (cudnn on GPU with bf16 compute,
        # splash on TPU, else xla) | xla (query-blocked) | cudnn | splash. Decoding always uses xla.
        attention="auto",
        # LoRA (rank 0 = off): only the adapters (fp32) train; the base is frozen, stored in base_dtype:
        # bfloat16 | float32 | int8 | nf4 (QLoRA: projections quantized on load, the rest bf16).
        # targets: any of q,k,v,o,gate,up,down. The EMA teacher averages the factors A and B (as PEFT).
        lora=ml_collections.ConfigDict(dict(rank=0, alpha=32.0, targets="q,k,v,o,gate,up,down",
                                            base_dtype="bfloat16")),
    ))
    c.data = ml_collections.ConfigDict(dict(
        task="demonstrations",  # tooluse | science | medical | knowledge | demonstrations
        path="",  # file or folder of the task's rows
        url="",  # download one public file instead of a local path (needs network)
        split="train",
        eval_split="",  # "" = no held-out evaluation
        data_dir="",  # where TFDS writes array_record files ("" = WORKDIR/tfds)
        teacher_template=DEFAULT_TEACHER_TEMPLATE,
        scorer="",  # method=rejection: the scorer that accepts a completion ("" = data.task's)
        max_student_prompt=1024,
        max_teacher_prompt=4096,
        # Prompt length buckets grow by this factor (multiples of 32): 2 = powers of two, fewer
        # compiled shapes; 1.5 = less padding (17% faster steps on configs/tiny.py, docs/PERFORMANCE.md).
        bucket_growth=1.5,
        shuffle=True,
    ))
    c.batch = ml_collections.ConfigDict(dict(prompts_per_step=32, micro_batches=1))
    c.optim = ml_collections.ConfigDict(dict(
        lr=5e-5, warmup_steps=10, schedule="cosine", b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
        grad_clip=1.0))
    c.loss = ml_collections.ConfigDict(dict(
        kind="forward_kl",  # forward_kl | reverse_kl | jsd | sampled_token
        beta=0.5, top_k=0, top_k_support="teacher", skip_first_tokens=3,
        aggregation="sequence_mean", chunk_size=256, temperature=1.0,
        importance_correction=False, importance_cap=2.0))
    # ema_dtype: the EMA teacher's storage. "float32" costs a bf16 model 2 more bytes/param; "" = the
    # parameter dtype, as the paper's code (bf16 in place), where most alpha=0.01 increments round away.
    # kind: ema | frozen | live (the student itself) | external (teacher.path: another checkpoint with the
    # student's tokenizer, any size or architecture, frozen, in teacher.dtype ("" = the student's)).
    # anchor (continual runs): stage = each stage's teacher starts from that stage's initial model;
    # base = from the model before the first stage (frozen: the base itself; ema: restarts from it).
    # init_path: the teacher's initial weights from this checkpoint (same shapes; set by anchor=base).
    c.teacher = ml_collections.ConfigDict(dict(kind="ema", ema_alpha=0.01, ema_dtype="float32", anchor="stage",
                                               init_path="", path="", dtype=""))
    # num_generations: rollouts per prompt (the paper: 1; TRL: 8), each a row of the step's batch.
    # rollout_batches: generate the step's rows in this many sequential groups (a KV cache of
    # rows / rollout_batches at a time; what a 24 GB GPU needs at 7B).
    c.sampling = ml_collections.ConfigDict(dict(temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=2048,
                                                num_generations=1, rollout_batches=1))
    c.checkpoint = ml_collections.ConfigDict(dict(every=100, keep=3))
    # A resume whose settings alter the run (model, method, loss, teacher, lr, LoRA, data, ...) stops,
    # naming each `key: old -> new`, unless listed here (comma-separated keys); steps, log.*, eval.*,
    # checkpoint.* and mesh.* may change freely (noted, and kept in WORKDIR/config.resume-N.json).
    c.resume = ml_collections.ConfigDict(dict(allow_changes=""))
    c.eval = ml_collections.ConfigDict(dict(every=0, examples=64))
    # Evaluators (sdft_jax/eval/evaluators.py), each run every `every` steps (0 = eval.every) and
    # logged as eval/NAME. demo_nll and teacher_nll read data.eval_split (off while that is ""):
    # the held-out demonstrations' NLL as the student sees them and under the teacher context (the
    # teacher's health: an SDFT teacher that loses its in-context skill stops being a target).
    c.evals = ml_collections.ConfigDict(dict(
        demo_nll=dict(type="heldout_nll", split="", examples=0, context="student", every=0),
        teacher_nll=dict(type="heldout_nll", split="", examples=0, context="teacher", every=0)))
    # phase_times: block after the rollout and after the step to report time_generate /
    # time_train_step (slower: the host no longer prepares the next batch during the step).
    # wandb: Weights & Biases next to metrics.jsonl when project is set (pip install -e ".[wandb]");
    # mode online | offline | disabled; name defaults to the workdir's name; a resume continues the run.
    c.log = ml_collections.ConfigDict(dict(every=1, samples_every=0, peak_flops_per_device=0.0, phase_times=False,
                                           wandb=dict(project="", entity="", name="", mode="online")))
    c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
    return c


def fp32_master_weights(c: ml_collections.ConfigDict) -> None:
    """fp32 parameters, EMA teacher and AdamW moments; bf16 matmuls. Pure bf16 storage loses most
    updates at the paper's learning rates: on SmolLM2-135M at lr 5e-5, 50 AdamW steps changed 7.6%
    of the bf16 weights and 100% of fp32 ones (benchmarks/precision.py, docs/PERFORMANCE.md)."""
    c.model.dtype, c.model.compute_dtype = "float32", "bfloat16"


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """`task=tooluse,seed=1` -> ConfigDict(task="tooluse", seed=1) over `defaults` (big_vision style):
    each value takes its default's type; an unknown key names the known ones. The one place a
    config's `:ARG` is checked."""
    out = ml_collections.ConfigDict(defaults)
    for item in filter(None, (arg or "").split(",")):
        if "=" not in item:
            raise ValueError(f"config argument {item!r} must look like key=value")
        k, v = (x.strip() for x in item.split("=", 1))
        if k not in defaults:
            raise ValueError(f"unknown config argument {k!r}; known: {', '.join(sorted(defaults))}")
        kind = type(defaults[k])
        try:
            out[k] = v.lower() in ("1", "true", "yes") if kind is bool else kind(v)
        except ValueError:
            raise ValueError(f"config argument {k}={v!r} must be of type {kind.__name__}") from None
    return out


def apply_task_and_method(c: ml_collections.ConfigDict, args, task_paths: dict[str, str] | None = None):
    """Common `:task=...,method=...` handling for the model configs ('' = keep the config's)."""
    if args.get("method"):
        c.method = args["method"]
    if args.get("task"):
        c.data.task = args["task"]
        if task_paths and args["task"] in task_paths:
            c.data.path = task_paths[args["task"]]
    return c


# The real task files in ../shared/data beside the clone (absolute, so runs work from any cwd).
_SHARED_DATA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"))
SHARED_TASKS = {
    "tooluse": os.path.join(_SHARED_DATA, "tooluse"),
    "science": os.path.join(_SHARED_DATA, "science", "sciknoweval_chemistry_L3"),
    "medical": os.path.join(_SHARED_DATA, "medical"),
}


def shared_data(rel: str) -> str:
    return os.path.join(_SHARED_DATA, rel)


def real_model_path(folder: str) -> str:
    """A checkpoint built by ../shared/tools/real_models.py ($SDFT_REAL_MODELS or its default)."""
    root = os.environ.get("SDFT_REAL_MODELS", os.path.expanduser("~/.cache/sdft_real_models"))
    return os.path.join(root, folder)
