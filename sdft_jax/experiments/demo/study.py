"""The demo study (docs/DEMO.md, "The study"): its phases as sweeps, run one after another, resumable.

    python -m sdft_jax.experiments.demo.study run                  # every phase; a rerun resumes
    python -m sdft_jax.experiments.demo.study run --phase validation
    python -m sdft_jax.experiments.demo.study commands             # the sweep commands it runs

Run folders live under $SDFT_JAX_CACHE/runs/demo_study_<phase> (a later session on the same
machine resumes them). Phase B's learning rate is r*, chosen from the validation phase's runs by
choose_rate() (the rule written in docs/DEMO.md before the first run), so B waits for validation.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

import numpy as np

from sdft_jax.experiments.demo.aggregate import load_runs
from sdft_jax.runtime.cache import cache_root

ARMS = "sdft/sdft:base/sft/sft@plain/offline/rejection"
RATES = (3e-5, 1e-4, 3e-4)
SEEDS = (0, 1, 2, 3, 4)
VALIDATION_SEEDS = (100, 101)
COMMON = ["--config.demo.num_tasks=2", "--config.demo.curve_every=20"]
# r*'s rule: a rate qualifies when both arms learn task 1 (accuracy >= LEARNED at some stage-1
# curve point) and have not forgotten everything by its end (prior skills >= NOT_SATURATED).
LEARNED, NOT_SATURATED, FALLBACK_RATE = 0.25, 0.10, 1e-4


def folder(phase: str) -> str:
    return os.path.join(cache_root(), "runs", f"demo_study_{phase}")


def _axis(key: str, values) -> str:
    return f"--sweep={key}=[{','.join(f'{v:g}' if isinstance(v, float) else str(v) for v in values)}]"


def phase_command(phase: str, rate: float | None = None) -> list[str]:
    """The `sdft_jax.sweep` command line of a phase (B needs r*)."""
    cmd = [sys.executable, "-m", "sdft_jax.sweep", f"--workdir={folder(phase)}"] + COMMON
    if phase == "validation":
        return cmd[:3] + ["--config=configs/demo.py:methods=sdft/sft"] + cmd[3:] + [
            _axis("seed", VALIDATION_SEEDS), _axis("demo.lr", RATES)]
    if phase == "A":
        return cmd[:3] + [f"--config=configs/demo.py:methods={ARMS}"] + cmd[3:] + [
            _axis("seed", SEEDS), _axis("demo.lr", RATES)]
    if phase == "B":
        return cmd[:3] + [f"--config=configs/demo.py:methods={ARMS}", "--config.demo.pretrain.seed=1",
                          f"--config.demo.lr={rate:g}"] + cmd[3:] + [_axis("seed", SEEDS)]
    raise ValueError(f"phase {phase!r}; expected validation, A or B")


def stage1_curve(method: dict) -> list[dict]:
    return method["curves"][0]


def prior_mean(row: dict) -> float:
    return float(np.mean([v for k, v in row.items() if k.startswith("prior:") and "/" not in k]))


def qualifies(method: dict, task: str) -> bool:
    curve = stage1_curve(method)
    return max(r[task] for r in curve) >= LEARNED and prior_mean(curve[-1]) >= NOT_SATURATED


def choose_rate(runs: list[dict]) -> tuple[float, str]:
    """r*: the largest rate at which, on every validation seed, both arms qualify; else FALLBACK_RATE."""
    verdicts = {}
    for r in runs:
        task = r["methods"]["sdft"]["columns"][0]
        ok = all(qualifies(r["methods"][arm], task) for arm in ("sdft", "sft"))
        verdicts.setdefault(r["lr"], []).append(ok)
    good = [lr for lr, oks in verdicts.items() if len(oks) == len(VALIDATION_SEEDS) and all(oks)]
    why = ", ".join(f"{lr:g}: {sum(v)}/{len(v)} seeds qualify" for lr, v in sorted(verdicts.items()))
    return (max(good), why) if good else (FALLBACK_RATE, why + f"; none qualifies, fallback {FALLBACK_RATE:g}")


def run_phase(phase: str) -> int:
    rate = None
    if phase == "B":
        rate, why = choose_rate(load_runs([folder("validation")]))
        print(f"[study] r* = {rate:g} ({why})", flush=True)
    cmd = phase_command(phase, rate)
    print(f"[study] phase {phase}: {shlex.join(cmd)}", flush=True)
    return subprocess.call(cmd)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdft_jax.experiments.demo.study", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "commands"))
    parser.add_argument("--phase", choices=("validation", "A", "B", "all"), default="all")
    args = parser.parse_args(argv)
    phases = ("validation", "A", "B") if args.phase == "all" else (args.phase,)
    if args.action == "commands":
        for p in phases:
            print(shlex.join(phase_command(p, 0.0 if p == "B" else None)).replace("lr=0", "lr=<r*>"))
        return 0
    for p in phases:
        rc = run_phase(p)
        if rc:
            print(f"[study] phase {p} exited {rc}; rerun the same command to resume", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
