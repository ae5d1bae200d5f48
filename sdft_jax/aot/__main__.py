"""Compile a run for a TPU slice or a GPU it does not have, and report memory and cost per chip.

    python -m sdft_jax.aot --config=configs/qwen7b.py --topology=v5p:2x2x1 [--config.key=value ...] [--out DIR]
    python -m sdft_jax.aot --config=configs/qwen7b_lora_gpu.py:base_dtype=nf4 --topology=l4:1x1x1

The run's mesh is built over the topology's devices (libtpu's or XLA:GPU's description: no TPU or
GPU needed), the state and inputs as shapes with the run's shardings (no weights, no data; the model's
shapes from model.path's config.json, or sdft_jax/aot/known_models.py when that folder is not here), and
the run's programs are compiled: the fused step of config.method, the other method's step (the
baseline of a comparison), the sampler alone, and the held-out NLL evaluators the config enables.
Per program and per chip: memory_analysis() against the chip's HBM, cost_analysis(), a modeled
lower-bound time and MFU ceiling (sdft_jax/aot/report.py), then one line: does the run fit?
TPU needs libtpu in the Python (pip install -e . "jax[tpu]"), GPU the CUDA plugin
(benchmarks/aot_gpu_venv.sh); docs/PERFORMANCE.md, "TPU, compiled ahead of time (no TPU)".
"""
from __future__ import annotations

import os
import sys

# Compile for the target, run nothing: JAX's own backend stays the CPU (a TPU VM's chips or a local
# GPU are left to whatever runs there), libtpu is told not to look for a TPU.
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5p-8")
os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import importlib.metadata as md  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jaxlib  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from sdft_jax.aot import programs as aot_programs  # noqa: E402
from sdft_jax.aot import report as aot_report  # noqa: E402
from sdft_jax.aot import targets as aot_targets  # noqa: E402
from sdft_jax.cli import run_cli  # noqa: E402
from sdft_jax.model.attention import compiling_for  # noqa: E402
from sdft_jax.programs.errors import USER_ERRORS  # noqa: E402
from sdft_jax.runtime.memory_check import verdict  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "ml_collections config file[:arg]", lock_config=True)
_TOPOLOGY = flags.DEFINE_string("topology", "v5p:2x2x1", "CHIP:SHAPE, e.g. v5p:2x2x1 (v5p-8), v5p:2x2x2, "
                                "v5p:4x4x4, v5e:4x4, v6e:2x2, h100:1x1x1, h200:1x1x1, l4:1x1x1")
_PROGRAMS = flags.DEFINE_list("programs", "step,other_method,sampler,evals",
                              "which programs: step, other_method, sampler, evals")
_OUT = flags.DEFINE_string("out", None, "folder for aot.json, aot.md and each program's HLO text (default: print only)")


def versions(platform: str) -> str:
    compiler = "libtpu" if platform == "tpu" else "jax-cuda12-plugin"
    try:
        compiler_version = md.version(compiler)
    except md.PackageNotFoundError:
        compiler_version = "?"
    return f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, {compiler} {compiler_version}"


def compile_report(config, topology: str, programs=("step", "other_method", "sampler", "evals"),
                   name: str = "config", hlo_dir: str | None = None, say=print) -> tuple[dict, list[dict], tuple[bool, str]]:
    """(header, one row per program, the memory check's verdict) for `config` on `topology`; each
    compiled program's HLO text in hlo_dir when given."""
    target = aot_targets.parse_topology(topology)
    # A bad model.path (or external teacher.path) is named before the compiler is asked for devices.
    aot_programs.model_folder(config.model.path)
    if config.teacher.kind == "external":
        aot_programs.model_folder(config.teacher.path, "teacher.path")
    devices = aot_targets.target_devices(target)
    with compiling_for(target.chip.platform):
        plan = aot_programs.build(config, devices, tuple(programs))
        mesh = dict(plan.mesh.shape)
        hosts = len({d.process_index for d in devices})
        header = dict(config=name, topology=target.name, chip=target.chip.name,
                      chip_source=target.chip.source, num_chips=len(devices), hosts=hosts, mesh=mesh,
                      model=f"{plan.model_cfg.arch} {plan.n_params / 1e9:.2f}B params from {plan.model_source}, "
                            f"attention {plan.model_cfg.attention}" + plan.teacher_note,
                      versions=versions(target.chip.platform))
        say(f"[aot] {header['topology']}: {len(devices)} x {target.chip.name}, {hosts} host(s), mesh {mesh}; "
            f"{header['model']}; {header['versions']}")
        rows = []
        for p in plan.programs:
            say(f"[aot] compiling {p.name} ...")
            t0 = time.perf_counter()
            compiled = p.jitted.lower(*p.args).compile()
            seconds = time.perf_counter() - t0
            row = aot_report.analyze(p.name, compiled, target.chip, len(devices), p.model_flops, p.decode_bytes,
                                     seconds)
            if hlo_dir:
                row["hlo"] = os.path.join(hlo_dir, re.sub(r"[^a-z0-9]+", "_", p.name.lower()).strip("_") + ".hlo.txt")
                with open(row["hlo"], "w") as f:
                    f.write(compiled.as_text())
            rows.append(row)
            say(f"[aot]   {seconds:.1f} s; peak {row['peak'] / 2 ** 30:.2f} GiB per chip of "
                f"{row['hbm'] / 2 ** 30:.0f} GiB")
    ok = verdict({r["program"]: r["peak"] for r in rows}, target.chip.hbm_bytes, f"{target.name} ({target.chip.name})")
    return header, rows, ok


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None:
        print("error: --config is required (e.g. --config=configs/qwen7b.py)", file=sys.stderr)
        return 2
    config = _CONFIG.value
    try:
        name = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")), "config")
        overrides = [a for a in sys.argv if a.startswith("--config.")]
        if _OUT.value:
            os.makedirs(_OUT.value, exist_ok=True)
        header, rows, (fits, line) = compile_report(config, _TOPOLOGY.value, tuple(_PROGRAMS.value),
                                                    " ".join([name, *overrides]), hlo_dir=_OUT.value)
    except (aot_targets.TopologyError, *USER_ERRORS) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    table = aot_report.markdown(header, rows)
    print(table)
    print(f"[aot] memory check: {line}")
    if _OUT.value:
        with open(os.path.join(_OUT.value, "aot.md"), "w") as f:
            f.write(table + f"\n\nmemory check: {line}\n")
        with open(os.path.join(_OUT.value, "aot.json"), "w") as f:
            f.write(aot_report.to_json({**header, "fits": fits, "memory_check": line}, rows))
    return 0 if fits else 3


def entry() -> None:
    run_cli(main)


if __name__ == "__main__":
    entry()
