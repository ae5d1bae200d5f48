"""The device suite's measurements: platform, decode throughput vs the HBM roofline, SFT / SDFT
train-step time and MFU, the SDFT/SFT wall-clock ratio, and each program's memory.

    python benchmarks/device_suite.py --out DIR [--dry_run]

Random-weight Qwen2.5-1.5B shapes (benchmarks/memory.py MODELS), bf16 parameters and compute, one
device, `scan_layers`. Every program is compiled once (`jit(...).lower(...).compile()`) and timed
from the compiled executable: median of --repeats calls after one warm-up call. FLOPs are counted as
in docs/PERFORMANCE.md: 2 x parameters per token forward, 4 x backward, attention ignored.
  decode     generate (prefill + N decode steps, no stop token) at batch 32 and 128, prompt 512,
             512 new tokens; tokens/s = B*N/s; and batch 32 again with decode_chunks=1 (one
             whole-length KV cache) against the default 8 (a cache grown chunk by chunk). Roofline = the bytes a decoder must read (the
             weights once per decoded token + the FILLED KV-cache slots per step) / HBM bandwidth;
             fraction = roofline seconds / measured seconds (prefill included in the measured time).
  train      one SFT and one SDFT step at student sequence 2048 (prompt 512 + completion 1536;
             teacher context = prompt + 512-token demonstration + 32 template tokens), batch 4.
  ratio      paper-like shapes scaled to one GPU: 32 prompts, prompt 512, demonstration 512,
             completion 512 (the paper: 2048), 4 micro-batches; SDFT = generate + SDFT step,
             SFT = SFT step on the demonstration.
--dry_run runs the same code at toy shapes (a 2-layer model) on whatever device is there (CI: CPU).
Writes DIR/device_suite.json (updated after every phase) and DIR/device_suite.md.
"""
import argparse
import json
import os
import time
import traceback

from _timing import median_seconds

HBM_BYTES_PER_S = {"H200": 4.8e12, "H100 80GB HBM3": 3.35e12, "H100 SXM": 3.35e12, "H100 PCIe": 2.0e12,
                   "H100 NVL": 3.9e12, "H100": 3.35e12, "A100-SXM4-80GB": 2.04e12}
PEAK_BF16_FLOPS = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12}  # dense
FULL = dict(model="qwen2.5-1.5b", decode_batches=(32, 128), prompt=512, new_tokens=512,
            train_batch=4, train_prompt=512, train_completion=1536, demonstration=512,
            ratio_prompts=32, ratio_completion=512, micro_batches=4, chunk=256)
DRY = dict(model="toy", decode_batches=(4, 2), prompt=16, new_tokens=8, train_batch=2, train_prompt=16,
           train_completion=48, demonstration=16, ratio_prompts=4, ratio_completion=8, micro_batches=2,
           chunk=16)
TOY_ARCH = dict(architectures=["Qwen2ForCausalLM"], vocab_size=512, hidden_size=64, intermediate_size=128,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, rope_theta=1e6,
                tie_word_embeddings=True)


def _lookup(table: dict, kind: str):
    return next((v for k, v in table.items() if k.lower() in kind.lower()), None)


def platform() -> dict:
    import jax
    import jaxlib
    d = jax.devices()[0]
    stats = d.memory_stats() or {}
    return {"platform": d.platform, "device_kind": d.device_kind, "device_count": jax.device_count(),
            "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "memory_gib": stats.get("bytes_limit", 0) / 2 ** 30 or None,
            "hbm_bytes_per_s": _lookup(HBM_BYTES_PER_S, d.device_kind) if d.platform == "gpu" else None,
            "peak_bf16_flops": _lookup(PEAK_BF16_FLOPS, d.device_kind) if d.platform == "gpu" else None}


def _gib(compiled) -> float:
    """Arguments + what the program allocates beyond them (sdft_jax.runtime.memory_check)."""
    from sdft_jax.runtime.memory_check import new_bytes
    need = new_bytes(compiled)
    return float("nan") if need is None else sum(need) / 2 ** 30


class Suite:
    def __init__(self, shapes: dict, out_dir: str, repeats: int):
        import jax
        import numpy as np

        from memory import MODELS
        from sdft_jax.model import ModelConfig, abstract_model, init_params
        self.s, self.out_dir, self.repeats = shapes, out_dir, repeats
        arch = TOY_ARCH if shapes["model"] == "toy" else MODELS[shapes["model"]]
        self.cfg = ModelConfig.from_hf_dict(arch, param_dtype="bfloat16", dtype="bfloat16", scan_layers=True)
        self.graphdef, _ = abstract_model(self.cfg)
        self.params = init_params(self.cfg, 0)
        self.n_params = sum(x.size for x in jax.tree.leaves(self.params))
        self.rng = np.random.RandomState(0)
        self.results = {"platform": platform(), "shapes": {k: list(v) if isinstance(v, tuple) else v
                                                           for k, v in shapes.items()},
                        "params": self.n_params, "phases": {}}

    def tokens(self, *shape):
        import jax.numpy as jnp
        return jnp.asarray(self.rng.randint(0, self.cfg.vocab_size, shape), jnp.int32)

    def save(self):
        with open(os.path.join(self.out_dir, "device_suite.json"), "w") as f:
            json.dump(self.results, f, indent=2)

    def phase(self, name, fn):
        t0 = time.perf_counter()
        print(f"[device_suite] {name} ...", flush=True)
        try:
            row = fn()
        except Exception as e:  # one failing phase (OOM, say) must not lose the others
            traceback.print_exc()
            row = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
        row["wall_s"] = time.perf_counter() - t0
        self.results["phases"][name] = row
        self.save()
        print(f"[device_suite] {name}: {json.dumps(row)}", flush=True)
        return row

    # ----------------------------------------------------------------------------- decode
    def decode(self, batch: int, decode_chunks: int = 8) -> dict:
        import jax
        import jax.numpy as jnp

        from sdft_jax.core.sampler import SamplingConfig, make_generate
        P, N = self.s["prompt"], self.s["new_tokens"]
        gen = make_generate(self.graphdef, self.cfg,
                            SamplingConfig(max_new_tokens=N, temperature=1.0, decode_chunks=decode_chunks))
        args = (self.params, self.tokens(batch, P), jnp.ones((batch, P), jnp.int32), jax.random.key(0))
        t0 = time.perf_counter()
        compiled = gen.lower(*args).compile()
        compile_s = time.perf_counter() - t0
        seconds = median_seconds(lambda: jax.block_until_ready(compiled(*args)), self.repeats)
        c = self.cfg
        weight_bytes = 2 * self.n_params
        kv_per_slot = c.num_layers * 2 * batch * c.num_kv_heads * c.head_dim * 2  # bf16 K and V
        ideal_bytes = N * weight_bytes + kv_per_slot * sum(P + t for t in range(N))
        bw = self.results["platform"]["hbm_bytes_per_s"]
        return {"batch": batch, "prompt": P, "new_tokens": N, "decode_chunks": decode_chunks, "seconds": seconds,
                "tokens_per_s": batch * N / seconds,
                "roofline_fraction": (ideal_bytes / bw) / seconds if bw else None,
                "memory_gib": _gib(compiled), "compile_s": compile_s}

    # ----------------------------------------------------------------------------- train steps
    def step(self, method: str, batch: int, prompt: int, completion: int, micro_batches: int) -> dict:
        import jax
        import jax.numpy as jnp
        import numpy as np

        from sdft_jax.core.train_state import OptimConfig, init_state, make_optimizer
        from sdft_jax.core.methods import sequences
        from sdft_jax.core.update import StepConfig, make_train_step
        B, Ps, N = batch, prompt, completion
        Pt = Ps + self.s["demonstration"] + 32
        ones = lambda *shape: jnp.ones(shape, jnp.int32)  # noqa: E731
        if method == "sdft":
            b = sequences(self.tokens(B, Ps), ones(B, Ps), self.tokens(B, Pt), ones(B, Pt), self.tokens(B, N),
                           ones(B, N))
        else:  # the demonstration as target, padded to the completion length
            mask = jnp.asarray(np.arange(N)[None] < min(self.s["demonstration"], N), jnp.int32).repeat(B, 0)
            b = sequences(self.tokens(B, Ps), ones(B, Ps), None, None, self.tokens(B, N), mask)
        tx = make_optimizer(OptimConfig(lr=1e-6, warmup_steps=0))
        sc = StepConfig(method=method, chunk_size=self.s["chunk"], micro_batches=micro_batches)
        state = init_state(jax.tree.map(jnp.copy, self.params), tx, sc.teacher_kind, 0, "float32")
        step = jax.jit(make_train_step(self.graphdef, sc, tx), donate_argnums=(0,))
        t0 = time.perf_counter()
        compiled = step.lower(state, b).compile()
        compile_s = time.perf_counter() - t0
        holder = {"state": state}

        def run():
            holder["state"], m = compiled(holder["state"], b)
            jax.block_until_ready(m)
        seconds = median_seconds(run, self.repeats)
        n = self.n_params
        flops = 6 * n * B * (Ps + N) + (2 * n * B * (Pt + N) if method == "sdft" else 0)
        peak = self.results["platform"]["peak_bf16_flops"]
        return {"method": method, "batch": B, "student_seq": Ps + N, "teacher_seq": Pt + N if method == "sdft" else None,
                "micro_batches": micro_batches, "seconds": seconds, "tflops_per_s": flops / seconds / 1e12,
                "mfu": flops / seconds / peak if peak else None, "memory_gib": _gib(compiled),
                "compile_s": compile_s}

    def fused(self, batch: int, prompt: int, completion: int, micro_batches: int) -> dict:
        """The run's default: one program with the rollout (no stop token: all N tokens) and the SDFT update."""
        import jax
        import jax.numpy as jnp

        from sdft_jax.core.sampler import SamplingConfig
        from sdft_jax.core.step import make_step
        from sdft_jax.core.train_state import OptimConfig, init_state, make_optimizer
        from sdft_jax.core.update import StepConfig
        B, Ps, N = batch, prompt, completion
        Pt = Ps + self.s["demonstration"] + 32
        ones = lambda *shape: jnp.ones(shape, jnp.int32)  # noqa: E731
        inputs = {"student_prompt": self.tokens(B, Ps), "student_prompt_mask": ones(B, Ps),
                  "teacher_prompt": self.tokens(B, Pt), "teacher_prompt_mask": ones(B, Pt)}
        tx = make_optimizer(OptimConfig(lr=1e-6, warmup_steps=0))
        sc = StepConfig(chunk_size=self.s["chunk"], micro_batches=micro_batches)
        state = init_state(jax.tree.map(jnp.copy, self.params), tx, sc.teacher_kind, 0, "float32")
        step = make_step(self.graphdef, self.cfg, sc, SamplingConfig(max_new_tokens=N, temperature=1.0), tx)
        key = jax.random.key(0)
        t0 = time.perf_counter()
        compiled = step.lower(state, inputs, key).compile()
        compile_s = time.perf_counter() - t0
        holder = {"state": state}

        def run():
            holder["state"], m, _ = compiled(holder["state"], inputs, key)
            jax.block_until_ready(m)
        seconds = median_seconds(run, self.repeats)
        n = self.n_params
        flops = 6 * n * B * (Ps + N) + 2 * n * B * (Pt + N) + 2 * n * B * N
        peak = self.results["platform"]["peak_bf16_flops"]
        return {"method": "sdft (fused: rollout + update)", "batch": B, "student_seq": Ps + N, "teacher_seq": Pt + N,
                "micro_batches": micro_batches, "seconds": seconds, "tflops_per_s": flops / seconds / 1e12,
                "mfu": flops / seconds / peak if peak else None, "memory_gib": _gib(compiled), "compile_s": compile_s}

    def run(self):
        s = self.s  # most wanted first: a run cut by its time limit keeps what it measured
        first, *rest = s["decode_batches"]
        self.phase(f"decode_b{first}", lambda: self.decode(first))
        for method in ("sft", "sdft"):
            self.phase(f"train_{method}_seq{s['train_prompt'] + s['train_completion']}",
                       lambda m=method: self.step(m, s["train_batch"], s["train_prompt"], s["train_completion"], 1))
        ph = self.results["phases"]
        gen = ph.get(f"decode_b{s['ratio_prompts']}", {"error": "not run"})
        if "error" in gen or s["ratio_completion"] != s["new_tokens"]:  # reuse the decode run when it matches
            gen = self.phase(f"ratio_generate_b{s['ratio_prompts']}", lambda: self.decode(s["ratio_prompts"]))
        sdft = self.phase("ratio_sdft_step", lambda: self.step("sdft", s["ratio_prompts"], s["prompt"],
                                                                s["ratio_completion"], s["micro_batches"]))
        sft = self.phase("ratio_sft_step", lambda: self.step("sft", s["ratio_prompts"], s["prompt"],
                                                              s["ratio_completion"], s["micro_batches"]))
        if not any("error" in r for r in (gen, sdft, sft)):
            self.results["sdft_over_sft"] = (gen["seconds"] + sdft["seconds"]) / sft["seconds"]
        fused = self.phase("ratio_fused_sdft_step", lambda: self.fused(s["ratio_prompts"], s["prompt"],
                                                                       s["ratio_completion"], s["micro_batches"]))
        if not any("error" in r for r in (fused, sft)):
            self.results["fused_sdft_over_sft"] = fused["seconds"] / sft["seconds"]
        for b in rest:
            self.phase(f"decode_b{b}", lambda b=b: self.decode(b))
        # Last: the same decode over one whole-length cache (decode_chunks=1), for the chunking's effect.
        self.phase(f"decode_b{first}_whole_cache", lambda: self.decode(first, decode_chunks=1))
        self.save()


def markdown(results: dict, command: str) -> str:
    p = results["platform"]
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    lines = [f"Device: {p['device_count']} x {p['platform']} {p['device_kind']}, memory "
             f"{fmt(p['memory_gib'], '.1f')} GiB; JAX {p['jax']} (jaxlib {p['jaxlib']}); model "
             f"{results['shapes']['model']} random weights ({results['params'] / 1e6:.1f}M params), bf16; "
             f"command `{command}`", "",
             "| phase | shape | seconds | throughput | roofline / MFU | memory GiB | compile s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, r in results["phases"].items():
        if "error" in r:
            lines.append(f"| {name} | | | {r['error']} | | | |")
        elif "tokens_per_s" in r:
            lines.append(f"| {name} | batch {r['batch']}, prompt {r['prompt']}, {r['new_tokens']} new, "
                         f"decode_chunks {r['decode_chunks']} | "
                         f"{r['seconds']:.3f} | {r['tokens_per_s']:,.0f} tok/s | "
                         f"{fmt(r['roofline_fraction'], '.1%')} of HBM roofline | {r['memory_gib']:.2f} | "
                         f"{r['compile_s']:.1f} |")
        else:
            teacher = f", teacher {r['teacher_seq']}" if r["teacher_seq"] else ""
            lines.append(f"| {name} | batch {r['batch']} x student {r['student_seq']}{teacher}, "
                         f"{r['micro_batches']} micro-batch(es) | {r['seconds']:.3f} | "
                         f"{r['tflops_per_s']:.1f} TFLOP/s | {fmt(r['mfu'], '.1%')} MFU | "
                         f"{r['memory_gib']:.2f} | {r['compile_s']:.1f} |")
    if "sdft_over_sft" in results:
        lines += ["", f"SDFT/SFT wall-clock per optimizer step (generate + SDFT step vs SFT step, ratio "
                      f"shapes): **{results['sdft_over_sft']:.2f}x** (paper: ~4x, TRL + vLLM on one H200)."]
    if "fused_sdft_over_sft" in results:
        lines += ["", f"Fused SDFT step (rollout + update in one program, what a run executes) / SFT step: "
                      f"**{results['fused_sdft_over_sft']:.2f}x**."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--dry_run", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    suite = Suite(DRY if args.dry_run else FULL, args.out, 1 if args.dry_run else args.repeats)
    print(f"[device_suite] platform: {json.dumps(suite.results['platform'])}", flush=True)
    suite.run()
    text = markdown(suite.results, "bash benchmarks/device_suite.sh" + (" --dry_run" if args.dry_run else ""))
    with open(os.path.join(args.out, "device_suite.md"), "w") as f:
        f.write(text)
    print(text)
    failed = [k for k, r in suite.results["phases"].items() if "error" in r]
    if failed:
        raise SystemExit(f"[device_suite] failed phases: {failed}")


if __name__ == "__main__":
    main()
