"""A grid of runs over config overrides, one after another, resumable:

    python -m sdft_jax.sweep --config=configs/FILE.py[:ARG] --workdir DIR \\
        --sweep 'optim.lr=[1e-4,3e-4,1e-3]' --sweep 'method=[sdft,sft]' [--config.key=value ...]

Each point of the grid (the product of the --sweep lists, in order) runs the program its config
declares (train, continual, demo) in DIR/<key=value,...>/ with its own seed-determined data order and
rollouts, exactly as `python -m sdft_jax.main` would with those overrides. Every point's config is
resolved before the first one runs, so a bad key or value stops the sweep with one line at once.

Each point's outcome - `done`, `diverged at step N`, `failed: <one line>` - is recorded in its folder
(DIR/<point>/sweep_point.json, written last and atomically, with the point's config) and in
DIR/summary.json and DIR/summary.md (updated after every point); a diverged or failed point does
not stop the sweep, and the sweep exits non-zero at the end only if a point failed. On a rerun a
done or diverged point is skipped, a failed one too unless --retry_failed; an interrupted one
resumes from its checkpoint. A point whose folder recorded another config (changed base overrides)
is refused before anything runs, naming the keys, unless --rerun_changed runs it in DIR/<point>@<hash>.
"""
from __future__ import annotations

import ast
import hashlib
import itertools
import json
import os
import time
import traceback
from typing import Callable

import jax
import ml_collections

from sdft_jax.programs.errors import USER_ERRORS, TrainingDiverged
from sdft_jax.resolve import ConfigError, resolve
from sdft_jax.runtime.metrics_log import read_rows
from sdft_jax.runtime.run_config import changes, describe, plain, recorded

DONE = "sweep_point.json"  # a point's outcome, written in its folder when it ended (done, diverged, failed)
# Metrics worth a column when a run returns them (train.run returns the last logged step's metrics).
SUMMARY_KEYS = ("step", "loss", "forward_kl", "reverse_kl", "student_entropy", "grad_norm")


# What runs one point: (config, folder) -> final metrics. sdft_jax.sweep hands in the program
# registry's run_program; compare hands in train.run.
RunPoint = Callable[[ml_collections.ConfigDict, str], dict]


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
    with open(os.path.join(workdir, "summary.json"), "w") as f:  # each point's config stays in its folder
        json.dump([{k: v for k, v in r.items() if k != "config"} for r in rows], f, indent=2, sort_keys=True)
    keys = [k for k, _ in axes]
    seen = {m for r in rows for m in r.get("metrics", {})}
    metric_cols = [m for m in SUMMARY_KEYS if m in seen] + sorted(m for m in seen if m.startswith("eval/"))
    lines = ["| " + " | ".join(keys + metric_cols + ["status"]) + " |", "|" + "---|" * (len(keys) + len(metric_cols) + 1)]
    for r in rows:
        m = r.get("metrics", {})
        cells = [str(r["point"][k]) for k in keys] + [f"{m[c]:.4g}" if c in m else "" for c in metric_cols]
        lines.append("| " + " | ".join(cells + [r["status"].replace("|", "\\|")]) + " |")
    with open(os.path.join(workdir, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def run_sweep(base: ml_collections.ConfigDict, workdir: str, sweep_args: list[str], run_point: RunPoint, say=print, *,
              retry_failed: bool = False, rerun_changed: bool = False) -> list[dict]:
    if not sweep_args:
        raise SweepError("--sweep: give at least one KEY=[V1,...]")
    axes = [parse_axis(a, base) for a in sweep_args]
    if len({k for k, _ in axes}) != len(axes):
        raise SweepError("--sweep: a key is swept twice")
    points = grid(axes)
    check_points(base, points)
    folders = point_folders(base, points, workdir, rerun_changed)
    os.makedirs(workdir, exist_ok=True)
    say(f"[sweep] {len(points)} points over {', '.join(k for k, _ in axes)} in {workdir}")
    rows = []
    for i, (point, name) in enumerate(zip(points, folders)):
        folder = os.path.join(workdir, name)
        before = _outcome(folder)
        if before and (before["status"] == "done" or before["status"].startswith("diverged") or not retry_failed):
            rows.append(before)
            hint = "" if before["status"] == "done" else " (--retry_failed reruns failed points)"
            say(f"[sweep] {i + 1}/{len(points)} {name}: {before['status']} before, skipped{hint}")
            continue
        say(f"[sweep] {i + 1}/{len(points)} {name}")
        config = point_config(base, point)
        start = time.perf_counter()
        metrics, status = _run_point(run_point, config, folder)
        if metrics.get("preempted"):
            rows.append({"point": point, "folder": name, "status": "preempted", "metrics": _scalars(metrics)})
            write_summary(workdir, axes, rows)
            say(f"[sweep] stopped by {metrics.get('signal', 'a signal')} during {name}; rerun the same command to resume")
            return rows
        row = {"point": point, "folder": name, "status": status, "metrics": _scalars(metrics),
               "seconds": round(time.perf_counter() - start, 1),  # this invocation's share when resumed
               "config": plain(config)}
        if status != "done":
            say(f"[sweep] {i + 1}/{len(points)} {name}: {status}")
        _write_atomically(os.path.join(folder, DONE), row)
        rows.append(row)
        write_summary(workdir, axes, rows)
    write_summary(workdir, axes, rows)
    failed = [r for r in rows if r["status"].startswith("failed")]
    diverged = [r for r in rows if r["status"].startswith("diverged")]
    say(f"[sweep] {len(points)} points: {len(points) - len(failed) - len(diverged)} done, {len(diverged)} diverged, "
        f"{len(failed)} failed: {os.path.join(workdir, 'summary.md')}")
    return rows


def _run_point(run_point: RunPoint, config, folder: str) -> tuple[dict, str]:
    """-> (final metrics, status). A point that diverges or fails is recorded; the sweep goes on."""
    try:
        return run_point(config, folder) or {}, "done"
    except TrainingDiverged as e:
        print(f"[sweep] {e}", flush=True)
        return _last_logged(folder), f"diverged at step {e.step}"
    except USER_ERRORS as e:
        return _last_logged(folder), f"failed: {' '.join(str(e).split())}"
    except Exception as e:  # noqa: BLE001 - a bug in one point must not lose the others; its traceback is shown
        traceback.print_exc()
        return _last_logged(folder), f"failed: {type(e).__name__}: {' '.join(str(e).split())}"


def point_folders(base, points: list[dict], workdir: str, rerun_changed: bool) -> list[str]:
    """Each point's folder name. A folder that recorded another config than the point's is refused
    (before anything runs), or with rerun_changed replaced by NAME@<hash of the config>."""
    names, refused = [], []
    for point in points:
        config = plain(point_config(base, point))
        name = point_name(point)
        diff = _recorded_changes(os.path.join(workdir, name), config)
        if diff and rerun_changed:
            digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
            name = f"{name}@{digest}"
            diff = _recorded_changes(os.path.join(workdir, name), config)
        if diff:
            refused.append(f"{name} ({describe(diff)})")
        names.append(name)
    if refused:
        raise SweepError(f"sweep points ran before with other settings: {'; '.join(refused)}. Rerun with "
                         f"--rerun_changed to run them in new folders, or use another --workdir")
    return names


def _recorded_changes(folder: str, config: dict) -> dict:
    """Keys whose value the folder recorded differently (its outcome's config, else its config.json)."""
    outcome = _outcome(folder)
    if outcome and "config" in outcome:
        return changes(outcome["config"], config)
    found = recorded(folder) if os.path.isdir(folder) else None
    return changes(found[1], config) if found else {}


def _outcome(folder: str) -> dict | None:
    path = os.path.join(folder, DONE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _last_logged(folder: str) -> dict:
    """The last row of a point's metrics.jsonl (a diverged run's last good step), or {}."""
    rows = read_rows(folder)
    return rows[-1] if rows else {}


def _write_atomically(path: str, row: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(row, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
