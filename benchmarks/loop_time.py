"""Seconds per step of the training loop (`python -m sdft_jax.main`) for two checkouts, in one run.

    python benchmarks/loop_time.py --before /path/to/old/checkout --after . \
        --config configs/tiny.py --steps 40 --rounds 3 [--override --config.x=y ...]

Runs each checkout's main `--rounds` times, alternating (before, after, before, ...) so both see the
same machine load, each into a fresh workdir, and reads `time_step` from metrics.jsonl: the median
over steps 3..N of each run (steps 1-2 compile), then the median over rounds. Checkpoints, eval and
samples are left to the config; pass overrides to turn them off.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def one_run(repo: str, config: str, steps: int, overrides: list[str]) -> float:
    with tempfile.TemporaryDirectory() as work:
        env = {**os.environ, "PYTHONPATH": repo}
        env.pop("XLA_FLAGS", None)
        cmd = [sys.executable, "-m", "sdft_jax.main", f"--config={os.path.join(repo, config)}", f"--workdir={work}",
               f"--config.steps={steps}", *overrides]
        subprocess.run(cmd, cwd=repo, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = [json.loads(line) for line in open(os.path.join(work, "metrics.jsonl"))]
    return statistics.median(r["time_step"] for r in rows[2:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", default=".")
    ap.add_argument("--config", default="configs/tiny.py")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--override", action="append", default=[])
    args = ap.parse_args()
    times = {"before": [], "after": []}
    for _ in range(args.rounds):
        for name in ("before", "after"):
            times[name].append(one_run(os.path.abspath(getattr(args, name)), args.config, args.steps, args.override))
            print(f"{name}: {times[name][-1]:.4f} s/step", flush=True)
    print(f"\n{args.config} {' '.join(args.override)}, {args.steps} steps, median of {args.rounds} rounds:")
    print("| checkout | s/step (median over steps 3..N, then rounds) | rounds |")
    print("|---|---:|---|")
    for name in ("before", "after"):
        print(f"| {name} ({os.path.abspath(getattr(args, name))}) | {statistics.median(times[name]):.4f} | "
              f"{', '.join(f'{t:.4f}' for t in times[name])} |")


if __name__ == "__main__":
    main()
