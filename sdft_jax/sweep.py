"""A grid of runs over config overrides, one after another, resumable:

    python -m sdft_jax.sweep --config=configs/FILE.py[:ARG] --workdir DIR \\
        --sweep 'optim.lr=[1e-4,3e-4,1e-3]' --sweep 'method=[sdft,sft]' [--config.key=value ...]

Each point of the grid (the product of the --sweep lists, in order) runs the program its config
declares (train, continual, demo) in DIR/<key=value,...>/ with its own seed-determined data order and
rollouts, exactly as `python -m sdft_jax.main` would with those overrides. A point that finished
is skipped on a rerun; an interrupted one resumes from its checkpoint. Every point's config is
resolved before the first one runs, so a bad key or value stops the sweep with one line at once.
DIR/summary.json and DIR/summary.md hold each point's final metrics (updated after every point).
"""
from __future__ import annotations

import ast
import itertools
import json
import os
import sys
import time

import ml_collections
from absl import flags
from ml_collections import config_flags

from sdft_jax.programs import (default_workdir, flag_error, quiet_dataset_building, run_cli, run_program,
                               user_errors)

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)  # configs/ is a package (configs.common) from any cwd

DONE = "sweep_point.json"  # written in a point's folder when it finished
# Metrics worth a column when a run returns them (train.run returns the last logged step's metrics).
SUMMARY_KEYS = ("step", "loss", "forward_kl", "reverse_kl", "student_entropy", "grad_norm")


class SweepError(ValueError):
    pass


def parse_axis(text: str, config: ml_collections.ConfigDict) -> tuple[str, list]:
    """'optim.lr=[1e-4,3e-4]' -> ('optim.lr', [0.0001, 0.0003]), each value typed like the config's."""
    if "=" not in text:
        raise SweepError(f"--sweep {text!r}: expected KEY=[V1,V2,...]")
    key, raw = (x.strip() for x in text.split("=", 1))
    try:
        current = _get(config, key)
    except (KeyError, AttributeError):
        raise SweepError(f"--sweep {key}: not a key of the config") from None
    if not (raw.startswith("[") and raw.endswith("]")) or not raw[1:-1].strip():
        raise SweepError(f"--sweep {key}: values must be a non-empty list like [a,b], got {raw!r}")
    values = [_typed(key, v.strip(), current) for v in raw[1:-1].split(",")]
    if len(set(map(repr, values))) != len(values):
        raise SweepError(f"--sweep {key}: repeated values {values}")
    return key, values


def _typed(key: str, text: str, current):
    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise SweepError(f"--sweep {key}: {text!r} is not a bool")
        return text.lower() in ("true", "1")
    if isinstance(current, (int, float)):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise SweepError(f"--sweep {key}: {text!r} is not a number") from None
        if isinstance(current, int) and not (isinstance(value, int) or float(value).is_integer()):
            raise SweepError(f"--sweep {key}: {text!r} is not an integer")
        return type(current)(value)
    return text.strip("'\"")


def _get(config, key: str):
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def point_name(point: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in point.items()).replace("/", "_")


def grid(axes: list[tuple[str, list]]) -> list[dict]:
    keys = [k for k, _ in axes]
    return [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in axes))]


def point_config(base: ml_collections.ConfigDict, point: dict) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(base.to_dict())  # a deep copy per point
    c.update_from_flattened_dict(point)
    return c


def check_points(base, points: list[dict]) -> None:
    """Resolves every point's config (the train program's settings) before anything runs."""
    import jax
    from sdft_jax.resolve import ConfigError, resolve
    for point in points:
        c = point_config(base, point)
        if c.get("program", "train") != "train":
            continue  # the demo and continual runners check their own settings at their start
        try:
            resolve(c, jax.device_count(), jax.process_count())
        except ConfigError as e:
            raise SweepError(f"sweep point {point_name(point)}: {e}") from None


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def write_summary(workdir: str, axes: list[tuple[str, list]], rows: list[dict]) -> None:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(rows, f, indent=2, sort_keys=True)
    keys = [k for k, _ in axes]
    seen = {m for r in rows for m in r.get("metrics", {})}
    metric_cols = [m for m in SUMMARY_KEYS if m in seen] + sorted(m for m in seen if m.startswith("eval/"))
    lines = ["| " + " | ".join(keys + metric_cols + ["status"]) + " |", "|" + "---|" * (len(keys) + len(metric_cols) + 1)]
    for r in rows:
        m = r.get("metrics", {})
        cells = [str(r["point"][k]) for k in keys] + [f"{m[c]:.4g}" if c in m else "" for c in metric_cols]
        lines.append("| " + " | ".join(cells + [r["status"]]) + " |")
    with open(os.path.join(workdir, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def run_sweep(base: ml_collections.ConfigDict, workdir: str, sweep_args: list[str], say=print) -> list[dict]:
    if not sweep_args:
        raise SweepError("--sweep: give at least one KEY=[V1,...]")
    axes = [parse_axis(a, base) for a in sweep_args]
    if len({k for k, _ in axes}) != len(axes):
        raise SweepError("--sweep: a key is swept twice")
    points = grid(axes)
    check_points(base, points)
    os.makedirs(workdir, exist_ok=True)
    say(f"[sweep] {len(points)} points over {', '.join(k for k, _ in axes)} in {workdir}")
    rows = []
    for i, point in enumerate(points):
        name = point_name(point)
        folder = os.path.join(workdir, name)
        done = os.path.join(folder, DONE)
        if os.path.isfile(done):
            rows.append(json.load(open(done)))
            say(f"[sweep] {i + 1}/{len(points)} {name}: done before, skipped")
            continue
        say(f"[sweep] {i + 1}/{len(points)} {name}")
        start = time.perf_counter()
        metrics = run_program(point_config(base, point), folder) or {}
        if metrics.get("preempted"):
            rows.append({"point": point, "status": "preempted", "metrics": _scalars(metrics)})
            write_summary(workdir, axes, rows)
            say(f"[sweep] stopped by SIGTERM during {name}; rerun the same command to resume")
            return rows
        row = {"point": point, "status": "done", "metrics": _scalars(metrics),
               "seconds": round(time.perf_counter() - start, 1)}  # this invocation's share when resumed
        with open(done, "w") as f:
            json.dump(row, f, indent=2, sort_keys=True)
        rows.append(row)
        write_summary(workdir, axes, rows)
    write_summary(workdir, axes, rows)
    say(f"[sweep] all {len(points)} points done: {os.path.join(workdir, 'summary.md')}")
    return rows


def _define_flags():
    """Only when run as a program: sdft_jax.compare imports this module under sdft_jax.main's flags."""
    global _CONFIG, _WORKDIR, _SWEEP
    _CONFIG = config_flags.DEFINE_config_file("config", None, "ml_collections config file[:arg]", lock_config=True)
    _WORKDIR = flags.DEFINE_string("workdir", None, "the sweep's folder: one sub-folder per grid point")
    _SWEEP = flags.DEFINE_multi_string("sweep", [], "KEY=[V1,V2,...]: a config key and the values it takes")


def main(argv) -> int:
    if len(argv) > 1:
        raise SweepError(f"unexpected arguments: {argv[1:]}")
    quiet_dataset_building()
    try:
        config = _CONFIG.value
        if config is None:
            raise SweepError("--config: required (the config every point starts from)")
        config.get("program")
    except OSError as e:
        print(f"error: {flag_error(e)}", file=sys.stderr)
        return 2
    try:
        run_sweep(config, _WORKDIR.value or default_workdir(config) + "_sweep", _SWEEP.value)
    except (SweepError, *user_errors()) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    _define_flags()
    run_cli(main)
