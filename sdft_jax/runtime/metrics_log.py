"""metrics.jsonl + TensorBoard events + a console progress line (steps/s, tokens/s, ETA).
Only process 0 writes."""
from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
from etils import epath
from tensorboardX import SummaryWriter

from sdft_jax.runtime.wandb_log import open_run


class MetricsLogger:
    def __init__(self, workdir: str, total_steps: int, start_step: int = 0, *, wandb_settings=None,
                 run_config: dict | None = None):
        """wandb_settings: the config's log.wandb (W&B gets the same rows and `run_config`)."""
        self.enabled = jax.process_index() == 0
        self.total, self.start_step, self.t0 = total_steps, start_step, time.perf_counter()
        self._jsonl = self._tb = self._wandb = None
        self.workdir = epath.Path(workdir)
        if self.enabled:
            self.workdir.mkdir(parents=True, exist_ok=True)
            # Rows after the restored step were written by a run that died before its next checkpoint;
            # this run recomputes those steps, so the old rows go (TensorBoard: purge_step).
            for name in ("metrics.jsonl", "samples.jsonl"):
                dropped = _drop_rows_after(self.workdir / name, start_step)
                if dropped:
                    print(f"[sdft_jax] {name}: dropped {dropped} rows after step {start_step} (superseded "
                          f"by this run)", flush=True)
            # etils paths: local folders and gs:// alike.
            self._jsonl = (self.workdir / "metrics.jsonl").open("a")
            # tensorboardX writes gs:// only with google-cloud-storage installed; keep events local then.
            tb_dir = os.path.join(workdir, "tensorboard") if "://" not in workdir else os.path.join(
                os.path.expanduser("~/sdft_jax_tensorboard"), workdir.replace("://", "_").replace("/", "_"))
            self._tb = SummaryWriter(tb_dir, purge_step=start_step + 1)
            self._wandb = open_run(workdir, wandb_settings, run_config or {})

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        for k, v in row.items():
            if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(row)

    def progress(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        done = step - self.start_step
        elapsed = time.perf_counter() - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        width = 24
        filled = int(width * step / max(self.total, 1))
        parts = [f"[{'#' * filled}{'.' * (width - filled)}] {step}/{self.total}", f"{rate:.2f} step/s",
                 f"ETA {_fmt_seconds(eta)}", f"loss {metrics.get('loss', float('nan')):.4f}"]
        if "tokens_per_s" in metrics:
            parts.append(f"{metrics['tokens_per_s']:,.0f} tok/s")
        print(" | ".join(parts), file=sys.stderr, flush=True)

    def text(self, step: int, tag: str, text: str) -> None:
        if self.enabled:
            self._tb.add_text(tag, text, step)
            with (self.workdir / "samples.jsonl").open("a") as f:
                f.write(json.dumps({"step": step, "tag": tag, "text": text}) + "\n")

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tb.close()
            if self._wandb is not None:
                self._wandb.close()


def read_rows(workdir: str) -> list[dict]:
    """metrics.jsonl's rows (none when absent; a half-written last line from a killed run is skipped)."""
    path = epath.Path(workdir) / "metrics.jsonl"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def _drop_rows_after(path: epath.Path, step: int) -> int:
    if not path.exists():
        return 0
    lines = path.read_text().splitlines()
    keep = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # a half-written last line from a killed run
    if len(keep) < len(lines):
        tmp = path.parent / (path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        tmp.replace(path)
    return len(lines) - len(keep)


def _plain(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def _fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
