"""Weights & Biases, optional (extra `[wandb]`, on when `log.wandb.project` is set): the rows of
metrics.jsonl under the same names, and the resolved config. The run id lives in WORKDIR/wandb.json
so a resumed run continues the same W&B run; steps already sent are not sent again (a resume
recomputes the steps after its checkpoint, and they equal the ones sent: runs are deterministic).
Only process 0 logs."""
from __future__ import annotations

import json
import math
import os
import uuid

from etils import epath

from sdft_jax.runtime.cache import cache_root

MODES = ("online", "offline", "disabled")


class WandbRun:
    def __init__(self, workdir: str, settings, config: dict):
        try:
            import wandb  # optional: only runs that set log.wandb.project need it
        except ImportError:
            raise ImportError('log.wandb.project is set but wandb is not installed: pip install -e ".[wandb]"') from None
        self._state_path = epath.Path(workdir) / "wandb.json"
        state = json.loads(self._state_path.read_text()) if self._state_path.exists() else {}
        self.run_id = state.get("id") or uuid.uuid4().hex[:12]  # W&B ids: [a-z0-9]
        self.last_step = int(state.get("last_step", 0))
        # wandb writes its own files locally: in the workdir, or beside the cache for gs:// workdirs.
        local = workdir if "://" not in workdir else os.path.join(
            cache_root(), "wandb", workdir.replace("://", "_").replace("/", "_"))
        os.makedirs(local, exist_ok=True)
        self._run = wandb.init(project=settings.project, entity=settings.entity or None,
                               name=settings.name or os.path.basename(os.path.normpath(workdir)),
                               mode=settings.mode, id=self.run_id, resume="allow", dir=local, config=config)
        self._save()

    def log(self, row: dict) -> None:
        step = row["step"]
        if step <= self.last_step:
            return
        values = {k: v for k, v in row.items()
                  if k != "step" and isinstance(v, (int, float)) and math.isfinite(v)}
        self._run.log(values, step=step)
        self.last_step = step

    def close(self) -> None:
        # Saved here, not per step (a file write per step; a gs:// write for remote workdirs): a run
        # killed before close resumes W&B from an older last_step, and W&B itself drops the steps
        # below its run's current one.
        self._save()
        self._run.finish()

    def _save(self) -> None:
        self._state_path.write_text(json.dumps({"id": self.run_id, "last_step": self.last_step}))


def open_run(workdir: str, settings, config: dict) -> WandbRun | None:
    """A W&B run when `settings` (log.wandb) names a project and mode is not disabled, else None."""
    if settings is None or not settings.project or settings.mode == "disabled":
        return None
    return WandbRun(workdir, settings, config)
