"""The programs a config can declare (`config.program`): one run of sdft_jax.main, or one point of a
sweep (sdft_jax.sweep hands `run_program` to programs.sweep)."""
from __future__ import annotations

import ml_collections

from sdft_jax.experiments.demo.runner import run_demo
from sdft_jax.programs.compare import run_compare
from sdft_jax.programs.continual import run_continual
from sdft_jax.programs.train import run
from sdft_jax.resolve import ConfigError
from sdft_jax.runtime.cache import plain_path

PROGRAMS = {"train": run, "continual": run_continual, "demo": run_demo, "compare": run_compare}


def default_workdir(config: ml_collections.ConfigDict) -> str:
    return "runs/demo" if config.get("program", "train") == "demo" else "runs/default"


def run_program(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs what `config.program` names; returns its final metrics ({"preempted": True, ...} when
    stopped by SIGTERM)."""
    program = config.get("program", "train")
    if program not in PROGRAMS:
        raise ConfigError(f"program={program!r}; expected one of {', '.join(PROGRAMS)}")
    # file:///x is /x; gs:// workdirs are written through etils / orbax
    return PROGRAMS[program](config, plain_path(workdir))
