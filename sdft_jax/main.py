"""Entry point: python -m sdft_jax.main --config=configs/FILE.py[:ARG] --workdir DIR [--config.key=value ...]

Without --config it runs the built-in demo, configs/demo.py (SDFT vs SFT continual learning in
a generated world; about 15 minutes on a 2-core CPU; see docs/DEMO.md). Multi-host: set
--coordinator_address/--num_processes/--process_id
(or run on a TPU pod, where jax.distributed discovers them) and every process runs this same
command.
"""
from __future__ import annotations

import os
import signal
import sys

from absl import app, flags
from ml_collections import config_flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)  # configs/ is a package its files import from (configs.tiny), from any cwd
DEFAULT_CONFIG = os.path.join(_REPO, "configs", "demo.py")

_CONFIG = config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "ml_collections config file[:arg]",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output folder (checkpoints, logs, export); default "
                               "runs/demo for the demo, runs/default otherwise")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "number of processes (multi-process)")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index (multi-process)")
_DISTRIBUTED = flags.DEFINE_boolean("distributed", None, "call jax.distributed.initialize() (auto: on a TPU "
                                    "pod or when --coordinator_address is given)")


def _maybe_initialize_distributed() -> None:
    """Must run before anything touches a JAX backend."""
    import jax
    multi_host_tpu = "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")
    auto = multi_host_tpu or _COORDINATOR.value is not None
    if not (_DISTRIBUTED.value if _DISTRIBUTED.value is not None else auto):
        return
    kwargs = {}
    if _COORDINATOR.value is not None:
        kwargs = dict(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                      process_id=_PROCESS_ID.value)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)


def _quiet_dataset_building() -> None:
    """TFDS logs every shard it writes and draws tqdm bars; the run prints its own data summary."""
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    import tensorflow_datasets as tfds
    tfds.disable_progress_bar()


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    _maybe_initialize_distributed()
    _quiet_dataset_building()
    from sdft_jax.resolve import ConfigError
    from sdft_jax.train import TrainingDiverged, run
    from sdft_jax.checkpoint import CheckpointError
    from sdft_jax.workdir_lock import WorkdirBusy
    try:
        config = _CONFIG.value
        config.get("program")  # a config file that failed to load raises here
    except OSError as e:
        print(f"error: {_flag_error(e)}", file=sys.stderr)
        return 2
    try:
        program = config.get("program", "train")
        if program == "demo":
            from sdft_jax.demo.runner import run_demo
            run_demo(config, _WORKDIR.value or "runs/demo")
        elif program == "continual":
            from sdft_jax.continual import run_continual
            run_continual(config, _WORKDIR.value or "runs/default")
        elif program == "train":
            run(config, _WORKDIR.value or "runs/default")
        else:
            raise ConfigError(f"program={program!r}; expected train, continual or demo")
    except (ConfigError, TrainingDiverged, WorkdirBusy, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _flag_error(e: BaseException) -> str:
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
    """SIGTERM before the training loop has anything to save (it installs its own handler)."""
    print("[sdft_jax] SIGTERM during start-up: nothing to save yet; exiting", file=sys.stderr, flush=True)
    sys.exit(0)


def entry() -> None:
    signal.signal(signal.SIGTERM, _sigterm_before_training)
    try:
        app.run(main)
    except Exception as e:  # noqa: BLE001
        if flags.FLAGS.is_parsed():
            raise  # a failure inside the run: keep its traceback
        print(f"error: {_flag_error(e)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    entry()
