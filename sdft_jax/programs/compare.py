"""Methods compared fairly (the paper's protocol): each method gets the same hyperparameter sweep,
its point is chosen on a validation evaluator, and the chosen runs are evaluated on the test
evaluators next to the base model.

    config.program = "compare"
    config.compare = dict(
        methods=["sdft", "sft"],
        sweep=["optim.lr=[2e-5,6e-5,2e-4]", "steps=[30,60]"],  # sdft_jax.sweep axes, the same for every method
        select="val",                     # a config.evals evaluator, run at the last step of every point
        tie_break="val/knowledge_lenient",  # then this metric, then the earlier point of the grid
        evals={NAME: evaluator spec},     # the test evaluations: the base model and each chosen run
        ceiling={COLUMN: BASE_COLUMN},    # a row / bar: the base's BASE_COLUMN (oracle context)
        plot=[COLUMN, ...],               # accuracy columns drawn as grouped bars
        panels=[COLUMN, ...],             # other columns (an NLL, pass@1), a bar panel each
        keep="all",                       # or "chosen": free what no later step reads (below)
    )

Outputs in WORKDIR: base.json (base_per_question/NAME.jsonl: each generation evaluator's completions and
scores, for paired tests); METHOD/ = one sdft_jax.sweep folder per method (resumable; a rerun skips finished
points and evaluations; the chosen point's test_eval.json and per_question/); results.json, results.md, results.png.

keep="chosen" frees disk as the sweep goes (a 0.5B model's point holds a 2 GB checkpoint and a 2.4 GB
export): before each point and after each sweep it deletes the checkpoints/ of every finished
(done or diverged) point, which the sweep never resumes, and the export/ of every finished point that
can no longer be chosen (a done point of the same method scores strictly higher on select, then
tie_break; diverged points never are). Failed points keep theirs for --retry_failed.
"""
from __future__ import annotations

import glob
import json
import os
import platform
import shutil
import time

import jax
import ml_collections
import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global backend, no open figures

from sdft_jax.eval.evaluators import check_spec, evaluate_model
from sdft_jax.programs.sweep import DONE, point_name, run_sweep
from sdft_jax.programs.train import run
from sdft_jax.resolve import ConfigError
from sdft_jax.runtime.host import say


def check(config) -> None:
    cmp = config.get("compare")
    if cmp is None:
        raise ConfigError("compare: program=compare needs a compare section (methods, sweep, select, evals)")
    for key in ("methods", "sweep", "select", "evals"):
        if not cmp.get(key):
            raise ConfigError(f"compare.{key}: required")
    if cmp.select not in (config.get("evals") or {}):
        raise ConfigError(f"compare.select={cmp.select!r}: not an evaluator of config.evals ({sorted(config.evals)})")
    if cmp.get("keep", "all") not in ("all", "chosen"):
        raise ConfigError(f"compare.keep={cmp.keep!r}: expected 'all' or 'chosen'")
    for name, spec in cmp.evals.items():
        check_spec(name, spec)
    named = [*(cmp.get("ceiling") or {}).keys(), *(cmp.get("ceiling") or {}).values(), *(cmp.get("plot") or []),
             *(cmp.get("panels") or [])]
    for column in named:  # NAME or NAME/also_scorer
        if column.split("/")[0] not in cmp.evals:
            raise ConfigError(f"compare: column {column!r} is not an evaluator of compare.evals ({sorted(cmp.evals)})")


def select(rows: list[dict], key: str, tie_break: str = "") -> dict:
    """The finished sweep row with the highest metrics[key]; ties go to tie_break, then to the earlier row."""
    done = [r for r in rows if r["status"] == "done"]
    if not done:
        raise ValueError("compare: no finished sweep point to choose from")
    missing = [point_name(r["point"]) for r in done if key not in r["metrics"]]
    if missing:
        raise ValueError(f"compare: sweep points {missing} did not report {key}")
    return max(done, key=lambda r: _score(r, key, tie_break))  # the first of equal bests, in sweep order


def _score(row: dict, key: str, tie_break: str) -> tuple[float, float]:
    """What a point is chosen by: its metrics[key], then its tie_break metric (a missing key ranks last)."""
    m = row["metrics"]
    return m.get(key, float("-inf")), m.get(tie_break, 0.0) if tie_break else 0.0


def free_disk(method_dir: str, key: str, tie_break: str = "") -> None:
    """keep="chosen": deletes the checkpoints of finished points and the exports of points that can no
    longer be chosen (see the module docstring); says how much it freed."""
    rows = [json.load(open(path)) for path in sorted(glob.glob(os.path.join(method_dir, "*", DONE)))]
    finished = [r for r in rows if r["status"] == "done" or r["status"].startswith("diverged")]
    best = max((_score(r, key, tie_break) for r in finished if r["status"] == "done"), default=None)
    doomed = [os.path.join(method_dir, r["folder"], "checkpoints") for r in finished]
    doomed += [os.path.join(method_dir, r["folder"], "export") for r in finished
               if r["status"] != "done" or _score(r, key, tie_break) < best]
    freed = sum(_size(path) for path in doomed)
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    if freed:
        say(f"[compare] keep=chosen: freed {freed / 1e9:.2f} GB in {method_dir}")


def _size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _cached(path: str, compute) -> dict:
    if os.path.isfile(path):
        return json.load(open(path))
    start = time.perf_counter()
    value = {**compute(), "eval_seconds": round(time.perf_counter() - start, 1)}
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)
    return value


def _machine() -> str:
    return (f"{jax.devices()[0].device_kind} x {jax.device_count()} ({jax.default_backend()}), {os.cpu_count()} CPU cores, "
            f"JAX {jax.__version__}, {platform.node()}, {time.strftime('%Y-%m-%d')}")


def _method_config(config, method: str) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(config.to_dict())
    del c["compare"]
    c.program, c.method = "train", method
    c.evals[config.compare.select].every = -1  # once, at the last step of each point
    return c


def run_compare(config: ml_collections.ConfigDict, workdir: str) -> dict:
    check(config)
    cmp = config.compare
    os.makedirs(workdir, exist_ok=True)
    evals = {name: dict(spec) for name, spec in cmp.evals.items()}
    say(f"[compare] the base model: {', '.join(evals)}")
    base_records = os.path.join(workdir, "base_per_question")
    base = _cached(os.path.join(workdir, "base.json"),
                   lambda: evaluate_model(config.model.path, evals, config, workdir, base_records))
    key = f"eval/{cmp.select}"
    tie = f"eval/{cmp.tie_break}" if cmp.get("tie_break") else ""
    methods = {}
    for method in cmp.methods:
        say(f"[compare] {method}: sweep {' x '.join(cmp.sweep)}, chosen by {cmp.select}")
        method_dir = os.path.join(workdir, method)
        keep_chosen = cmp.get("keep", "all") == "chosen"
        run_point = run
        if keep_chosen:
            def run_point(c, folder, method_dir=method_dir):
                free_disk(method_dir, key, tie)  # the points finished so far, before this one writes its own
                return run(c, folder)
        rows = run_sweep(_method_config(config, method), method_dir, list(cmp.sweep), run_point, say=say)
        if keep_chosen:
            free_disk(method_dir, key, tie)
        if any(r["status"] == "preempted" for r in rows):
            say("[compare] stopped by SIGTERM; rerun the same command to resume")
            return {"preempted": True}
        best = select(rows, key, tie)
        folder = os.path.join(workdir, method, point_name(best["point"]))
        say(f"[compare] {method}: chose {point_name(best['point'])} ({cmp.select} {best['metrics'][key]:.3f}); test evaluations")
        test = _cached(os.path.join(folder, "test_eval.json"),
                       lambda: evaluate_model(os.path.join(folder, "export"), evals, config, workdir,
                                              os.path.join(folder, "per_question")))
        methods[method] = dict(chosen=best["point"], test=test, sweep=[
            dict(point=r["point"], status=r["status"], seconds=r.get("seconds"),
                 validation={k.removeprefix("eval/"): v for k, v in r["metrics"].items() if k.startswith(key)})
            for r in rows])
    results = dict(model=config.model.path, seed=config.seed, machine=_machine(), select=cmp.select,
                   tie_break=cmp.get("tie_break", ""),
                   sweep=list(cmp.sweep), columns=columns(base, cmp), base=base, methods=methods,
                   ceiling={c: base[b] for c, b in (cmp.get("ceiling") or {}).items()},
                   plot=list(cmp.get("plot") or []), panels=list(cmp.get("panels") or []))
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(markdown(results) + "\n")
    plot(results, os.path.join(workdir, "results.png"))
    say(f"[compare] done: {os.path.join(workdir, 'results.md')}")
    return results


def columns(row: dict, cmp) -> list[str]:
    """The table's columns: the plotted ones, the ceiling's, the panels', then any other evaluator's
    (a ConfigDict sorts its keys, so the config's order is not kept); each NAME before its NAME/SCORER."""
    order = [*(cmp.get("plot") or []), *(cmp.get("ceiling") or {}).values(), *(cmp.get("panels") or []), *cmp.evals]
    names = list(dict.fromkeys(c.split("/")[0] for c in order))
    return [k for name in names for k in row if k == name or k.startswith(name + "/")]


def markdown(results: dict) -> str:
    """The test table (base, each method's chosen run, the base with the oracle context) and each method's sweep."""
    cols = results["columns"]
    lines = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|",
             "| base | " + " | ".join(f"{results['base'][c]:.3f}" for c in cols) + " |"]
    for method, m in results["methods"].items():
        lines.append(f"| {method.upper()} ({point_name(m['chosen'])}) | "
                     + " | ".join(f"{m['test'][c]:.3f}" for c in cols) + " |")
    if results["ceiling"]:
        lines.append("| base, oracle context (the `ceiling` columns) | "
                     + " | ".join(f"{results['ceiling'][c]:.3f}" if c in results["ceiling"] else "" for c in cols) + " |")
    lines += ["", f"Sweep (validation: {results['select']}, ties by {results['tie_break'] or 'grid order'}):", ""]
    for method, m in results["methods"].items():
        vcols = sorted({k for r in m["sweep"] for k in r["validation"]})
        axes = list(m["sweep"][0]["point"])
        lines += [f"| {method.upper()}: " + " | ".join(axes + vcols) + " | train+eval s | chosen |",
                  "|---" * (len(axes) + len(vcols) + 2) + "|"]
        for r in m["sweep"]:
            cells = [str(r["point"][a]) for a in axes] + [f"{r['validation'].get(v, float('nan')):.3f}" for v in vcols]
            seconds = f"{r['seconds']:.0f}" if r.get("seconds") else ""
            lines.append("| " + " | ".join(cells + [seconds, "yes" if r["point"] == m["chosen"] else ""]) + " |")
        lines.append("")
    return "\n".join(lines).rstrip()


def plot(results: dict, path: str) -> None:
    """Grouped bars of the accuracy columns (base, methods, the base with the oracle context), one panel per other column."""
    acc, others = results["plot"], results["panels"]
    series = [("base", results["base"])] + [(m.upper(), r["test"]) for m, r in results["methods"].items()]
    if results["ceiling"]:
        series.append(("base, oracle context", results["ceiling"]))
    fig = Figure(figsize=(4 + 2.2 * len(acc) + 2.4 * len(others), 4))
    axes = fig.subplots(1, 1 + len(others),
                        gridspec_kw={"width_ratios": [max(len(acc), 1) * 1.5] + [1] * len(others)}, squeeze=False)
    axes = axes[0]
    width = 0.8 / len(series)
    for i, (label, row) in enumerate(series):
        xs = np.arange(len(acc)) + (i - (len(series) - 1) / 2) * width
        vals = [row.get(c, np.nan) for c in acc]
        axes[0].bar(xs, np.nan_to_num(vals), width, label=label)
    axes[0].set_xticks(np.arange(len(acc)), acc, rotation=15)
    axes[0].set_ylim(0, 1.05)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=8)
    for ax, col in zip(axes[1:], others):
        labels = [label for label, row in series if col in row]
        ax.bar(np.arange(len(labels)), [row[col] for _, row in series if col in row],
               color=[f"C{i}" for i, (_, row) in enumerate(series) if col in row])
        ax.set_xticks(np.arange(len(labels)), labels, rotation=30, fontsize=8)
        ax.set_title(col, fontsize=9)
    fig.suptitle(os.path.basename(results["model"].rstrip("/")))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
