"""The programs a config can declare (`config.program`), and the errors a user can cause.

Shared by `sdft_jax.main` (one run) and `sdft_jax.sweep` (a grid of runs)."""
from __future__ import annotations

import os
import signal
import sys

import ml_collections

PROGRAMS = ("train", "continual", "demo", "compare")


def user_errors() -> tuple[type[BaseException], ...]:
    """What a bad config, data file or workdir raises: reported as one line, never a traceback."""
    from sdft_jax.checkpoint import CheckpointError
    from sdft_jax.resolve import ConfigError
    from sdft_jax.train import NothingToTrain, TrainingDiverged
    from sdft_jax.workdir_lock import WorkdirBusy
    return ConfigError, TrainingDiverged, NothingToTrain, WorkdirBusy, CheckpointError, FileNotFoundError, ValueError


def quiet_dataset_building() -> None:
    """TFDS logs every shard it writes and draws tqdm bars; the run prints its own data summary."""
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    import tensorflow_datasets as tfds
    tfds.disable_progress_bar()


def default_workdir(config: ml_collections.ConfigDict) -> str:
    return "runs/demo" if config.get("program", "train") == "demo" else "runs/default"


def run_program(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs what `config.program` names; returns its final metrics ({"preempted": True, ...} when
    stopped by SIGTERM)."""
    from sdft_jax.cache import plain_path
    from sdft_jax.resolve import ConfigError
    workdir = plain_path(workdir)  # file:///x is /x; gs:// workdirs are written through etils / orbax
    program = config.get("program", "train")
    if program == "demo":
        from sdft_jax.demo.runner import run_demo
        return run_demo(config, workdir)
    if program == "continual":
        from sdft_jax.continual import run_continual
        return run_continual(config, workdir)
    if program == "compare":
        from sdft_jax.compare import run_compare
        return run_compare(config, workdir)
    if program == "train":
        from sdft_jax.train import run
        return run(config, workdir)
    raise ConfigError(f"program={program!r}; expected one of {', '.join(PROGRAMS)}")


def flag_error(e: BaseException) -> str:
    """One line for a bad --config file or --config.key, instead of a 60-line traceback."""
    import re
    text = str(e)
    if isinstance(e, OSError) and "Failed loading config file" in text:
        path = next((a.split("=", 1)[1] for a in reversed(sys.argv) if a.startswith("--config=")), "?")
        return f"--config={path}: cannot load the config file (relative to {os.getcwd()}): {text.splitlines()[-1].strip()}"
    if isinstance(e, (AttributeError, KeyError)):
        flag = next((a.split("=")[0] for a in sys.argv if a.startswith("--config.")
                     and re.search(rf"\b{re.escape(a.split('=')[0].rsplit('.', 1)[-1])}\b", text)), "--config.?")
        hint = re.search(r'Did you mean "([^"]+)"', text)
        return f"{flag}: unknown config key" + (f" (did you mean {hint.group(1)!r}?)" if hint else "")
    return " ".join(text.split())



def _sigterm_before_training(signum, frame):
    """SIGTERM or SIGINT before the training loop has anything to save (it installs its own handler)."""
    print(f"[sdft_jax] {signal.Signals(signum).name} during start-up: nothing to save yet; exiting", file=sys.stderr,
          flush=True)
    sys.exit(0)


def run_cli(main) -> None:
    """absl's app.run(main) with one-line errors for bad flags and a clean exit on an early SIGTERM."""
    from absl import app, flags
    signal.signal(signal.SIGTERM, _sigterm_before_training)
    signal.signal(signal.SIGINT, _sigterm_before_training)
    try:
        app.run(main)
    except Exception as e:  # noqa: BLE001
        if flags.FLAGS.is_parsed():
            raise  # a failure inside the run: keep its traceback
        print(f"error: {flag_error(e)}", file=sys.stderr)
        sys.exit(2)
