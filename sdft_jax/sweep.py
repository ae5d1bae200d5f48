"""Entry point: a grid of runs over config overrides, one after another, resumable (programs/sweep.py):

    python -m sdft_jax.sweep --config=configs/FILE.py[:ARG] --workdir DIR \\
        --sweep 'optim.lr=[1e-4,3e-4,1e-3]' --sweep 'method=[sdft,sft]' [--config.key=value ...]
"""
from __future__ import annotations

import sys

from absl import flags
from ml_collections import config_flags

from sdft_jax.cli import flag_error, quiet_dataset_building, run_cli
from sdft_jax.programs.errors import USER_ERRORS
from sdft_jax.programs.registry import default_workdir, run_program
from sdft_jax.programs.sweep import SweepError, run_sweep

_CONFIG = config_flags.DEFINE_config_file("config", None, "ml_collections config file[:arg]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "the sweep's folder: one sub-folder per grid point")
_SWEEP = flags.DEFINE_multi_string("sweep", [], "KEY=[V1,V2,...]: a config key and the values it takes")
_RETRY_FAILED = flags.DEFINE_boolean("retry_failed", False, "rerun the points that failed before")
_RERUN_CHANGED = flags.DEFINE_boolean("rerun_changed", False, "run points whose folder recorded other "
                                      "settings in a new folder, POINT@<config hash>")


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
        rows = run_sweep(config, _WORKDIR.value or default_workdir(config) + "_sweep", _SWEEP.value, run_program,
                         retry_failed=_RETRY_FAILED.value, rerun_changed=_RERUN_CHANGED.value)
    except (SweepError, *USER_ERRORS) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 1 if any(r["status"].startswith("failed") for r in rows) else 0


if __name__ == "__main__":
    run_cli(main)
