"""A compiled program's figures per chip: the compiler's memory analysis against the chip's HBM, its
cost analysis, and a modeled lower-bound time with the MFU ceiling it implies.

Lower bound = max(FLOPs / peak FLOP/s, bytes / HBM bandwidth) per chip, where FLOPs is the larger of
the compiler's count and the model's (Method.flops / chips), and bytes the larger of the
compiler's count and the rollout's decode-weight reads (tokens x weight bytes per chip). Both maxima
matter: XLA's cost analysis counts a while loop's body once, so it undercounts the decode loop and
the micro-batch loop (and GPU executables have no cost analysis at all). The MFU ceiling is the model
FLOPs per chip over peak x that time: what a perfect implementation of this program could reach.
"""
from __future__ import annotations

import argparse
import json
import sys

from sdft_jax.runtime.doc_block import emit

GIB = 2 ** 30


def _cost(compiled) -> dict:
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends raise instead of returning None
        return {}
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return dict(cost or {})


def analyze(name: str, compiled, chip, num_chips: int, model_flops: float, decode_bytes: float,
            compile_s: float) -> dict:
    """One row: bytes per chip from memory_analysis(), FLOPs / bytes from cost_analysis(), times in s."""
    m = compiled.memory_analysis()
    mem = dict(arguments=m.argument_size_in_bytes, outputs=m.output_size_in_bytes, temporaries=m.temp_size_in_bytes,
               aliased=m.alias_size_in_bytes, generated_code=m.generated_code_size_in_bytes)
    # Arguments stay resident; outputs not aliased to a donated argument are new; the program's code is in HBM too.
    peak = mem["arguments"] + mem["outputs"] - mem["aliased"] + mem["temporaries"] + mem["generated_code"]
    cost = _cost(compiled)
    compiler_flops, compiler_bytes = cost.get("flops"), cost.get("bytes accessed")
    flops = max(compiler_flops or 0.0, model_flops / num_chips)
    moved = max(compiler_bytes or 0.0, decode_bytes)
    t_compute, t_memory = flops / chip.peak_flops, moved / chip.hbm_bytes_per_s
    bound = max(t_compute, t_memory)
    return dict(program=name, compile_s=round(compile_s, 1), **mem, peak=peak,
                compiler_peak=getattr(m, "peak_memory_in_bytes", None), hbm=chip.hbm_bytes,
                fits=peak <= chip.hbm_bytes, compiler_flops=compiler_flops, compiler_bytes=compiler_bytes,
                model_flops_per_chip=model_flops / num_chips, decode_bytes_per_chip=decode_bytes,
                time_lower_bound_s=bound, bound_by="compute" if t_compute >= t_memory else "HBM bandwidth",
                mfu_ceiling=(model_flops / num_chips / chip.peak_flops) / bound if bound else None)


def _gib(n) -> str:
    return "-" if n is None else f"{n / GIB:.3g}"


def _num(x, unit=1.0, fmt="{:.3g}") -> str:
    return "-" if x is None else fmt.format(x / unit)


def markdown(header: dict, rows: list[dict]) -> str:
    """The table sdft_jax.aot prints and writes (GiB and TFLOP per chip)."""
    lines = [f"{header['config']} on {header['topology']} ({header['num_chips']} x {header['chip']}, "
             f"{header['hosts']} host(s)), mesh {header['mesh']}, {header['model']}; {header['versions']}",
             "",
             "| program | compile s | args GiB | outputs GiB | temps GiB | code GiB | peak GiB / HBM | fits | "
             "compiler TFLOP | model TFLOP | compiler GB moved | lower bound s (by) | MFU ceiling |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['program']} | {r['compile_s']} | {_gib(r['arguments'])} | {_gib(r['outputs'])} | "
            f"{_gib(r['temporaries'])} | {_gib(r['generated_code'])} | {_gib(r['peak'])} / {r['hbm'] / GIB:.0f} | "
            f"{'yes' if r['fits'] else '**no**'} | {_num(r['compiler_flops'], 1e12)} | "
            f"{_num(r['model_flops_per_chip'], 1e12)} | {_num(r['compiler_bytes'], 1e9)} | "
            f"{r['time_lower_bound_s']:.3g} ({r['bound_by']}) | {_num(r['mfu_ceiling'], 0.01, '{:.0f}%')} |")
    return "\n".join(lines)


def to_json(header: dict, rows: list[dict]) -> str:
    return json.dumps({**header, "programs": rows}, indent=1)


def doc_table(results: list[dict]) -> str:
    """docs/PERFORMANCE.md's table over several runs' aot.json, one row per compiled program."""
    lines = ["| config | topology (chips, hosts) | program | compile s | args / temps / peak GiB per chip | fits HBM | "
             "lower bound s (by) | MFU ceiling |", "|---|---|---|---:|---|---|---:|---:|"]
    for r in results:
        for x in r["programs"]:
            lines.append(
                f"| `{r['config']}` | {r['topology']} ({r['num_chips']}, {r['hosts']}) | {x['program']} | "
                f"{x['compile_s']} | {x['arguments'] / GIB:.1f} / {x['temporaries'] / GIB:.1f} / **{x['peak'] / GIB:.1f}** "
                f"| {'yes' if x['fits'] else '**no**'} of {x['hbm'] / GIB:.0f} | {x['time_lower_bound_s']:.2f} "
                f"({x['bound_by']}) | {_num(x['mfu_ceiling'], 0.01, '{:.0f}%')} |")
    versions = sorted({r["versions"] for r in results})
    return "\n".join(lines + ["", "Versions: " + "; ".join(versions)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="docs/PERFORMANCE.md's ahead-of-time tables from aot.json files")
    ap.add_argument("results", nargs="+", help="aot.json files (sdft_jax.aot --out DIR writes DIR/aot.json)")
    ap.add_argument("--update", default="", help="write into this doc's results block named --block")
    ap.add_argument("--block", default="aot-tpu")
    args = ap.parse_args(argv)
    emit(doc_table([json.load(open(p)) for p in args.results]), args.update, name=args.block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
