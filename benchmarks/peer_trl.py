"""Seconds per optimizer step: TRL's SDFTTrainer vs sdft_jax, same model, data, batch, machine.

    pip install trl==1.16.0      # not a project dependency; only this script needs it
    python benchmarks/peer_trl.py [--steps 30] [--prompts 8] [--completion 24] [--repeats 3] [--model PATH]

Both sides: the same model (default: the random tiny Qwen2 of `configs/tiny.py`, built once under
$SDFT_JAX_CACHE by `configs.tiny.materialize`; --model: any HF folder, e.g. a real checkpoint from
../shared/tools/real_models.py, passed to sdft_jax as --config.model.path), loaded in fp32, the toy
demonstrations of configs/tiny.py, the paper's teacher template, forward KL over the full vocabulary,
EMA teacher (rate 0.01), skip the first 3 completion tokens, one rollout per prompt at temperature 1,
AdamW with cosine schedule. TRL generates with transformers `generate` (no vLLM on CPU). Both sides are
timed the same way, wall-clock between consecutive optimizer-step completions of the whole
training loop (data, rollout, step, logging): TRL's `on_step_end` callback, sdft_jax's logged
`time_step`. Reported: the median over the steps after the first two (compilation / warm-up),
then the median over --repeats runs of each trainer, alternating (the box is shared and noisy).
Without trl installed it prints one line saying so and exits 0.
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TRL_VERSION = "1.16.0"  # what the table was measured with


def trl_seconds_per_step(model_dir, data_file, args) -> float:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl.experimental.sdft import SDFTConfig, SDFTTrainer

    from sdft_jax.data.prompts import DEFAULT_TEACHER_TEMPLATE
    torch.manual_seed(0)
    rows = [json.loads(l) for l in open(data_file)]
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}],
                             "privileged_context": r["demonstration"]} for r in rows])
    template = DEFAULT_TEACHER_TEMPLATE.replace("{x}", "{prompt}").replace("{c}", "{privileged_context}")
    cfg = SDFTConfig(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.prompts, gradient_accumulation_steps=1,
        num_generations=1, max_completion_length=args.completion, max_prompt_length=512,
        distillation_mode="full_logits", distillation_alpha=0.0, teacher_model_kind="ema", teacher_update_rate=0.01,
        num_loss_tokens_to_skip=3, temperature=1.0, learning_rate=1e-3, lr_scheduler_type="cosine", warmup_steps=2,
        max_steps=args.steps, bf16=False, gradient_checkpointing=False, logging_steps=1, report_to=[],
        teacher_prompt_template=template, use_cpu=True, save_strategy="no", seed=0)
    times = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            times.append(time.perf_counter())

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trainer = SDFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=AutoTokenizer.from_pretrained(model_dir),
                          callbacks=[Clock()])
    trainer.train()
    return statistics.median(b - a for a, b in zip(times[1:], times[2:]))


def sdft_jax_seconds_per_step(workdir, model_dir, args) -> float:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, "-m", "sdft_jax.main", f"--config={REPO}/configs/tiny.py",
                          f"--workdir={workdir}", f"--config.model.path={model_dir}", "--config.model.dtype=float32",
                          f"--config.steps={args.steps}", f"--config.batch.prompts_per_step={args.prompts}",
                          f"--config.sampling.max_new_tokens={args.completion}", "--config.eval.every=0",
                          "--config.log.samples_every=0", f"--config.checkpoint.every={args.steps}"],
                         env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"sdft_jax.main failed (rc {out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    return statistics.median(r["time_step"] for r in rows[2:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--completion", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="", help="an HF folder for both trainers (default: configs/tiny.py's model)")
    args = ap.parse_args()
    if importlib.util.find_spec("trl") is None:
        print(f"peer_trl: trl is not installed (pip install trl=={TRL_VERSION}); nothing to compare, skipped")
        return
    from configs.tiny import materialize
    tiny_model, data_file = materialize(0)
    model_dir = os.path.abspath(args.model) if args.model else tiny_model
    name = (f"{os.path.basename(model_dir.rstrip('/'))} ({model_dir})" if args.model
            else "tiny Qwen2 (configs/tiny.py model)")
    trl_version = __import__("trl").__version__
    ours, theirs = [], []
    for r in range(args.repeats):
        ours.append(sdft_jax_seconds_per_step(tempfile.mkdtemp(), model_dir, args))
        theirs.append(trl_seconds_per_step(model_dir, data_file, args))
        print(f"repeat {r + 1}/{args.repeats}: TRL {theirs[-1]:.3f} s/step, sdft_jax {ours[-1]:.3f} s/step", flush=True)
    o, t = statistics.median(ours), statistics.median(theirs)
    print(f"{name}, fp32, {args.prompts} prompts/step, {args.completion}-token rollouts, "
          f"forward KL full vocab, EMA teacher; median s/step over steps 3..{args.steps}, median of {args.repeats} runs")
    print("| trainer | s / optimizer step (median) | runs (min-max) | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| TRL SDFTTrainer {trl_version} (transformers generate, torch CPU) | {t:.3f} | "
          f"{min(theirs):.3f}-{max(theirs):.3f} | 1.00x |")
    print(f"| sdft_jax | {o:.3f} | {min(ours):.3f}-{max(ours):.3f} | {t / o:.2f}x faster |")


if __name__ == "__main__":
    main()
