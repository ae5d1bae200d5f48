"""Entry point: python -m sdft_jax.main --config=configs/FILE.py[:ARG] --workdir DIR [--config.key=value ...]

Without --config it runs the built-in demo, configs/demo.py (SDFT vs SFT continual learning in
a generated world; about 15 minutes on a 2-core CPU; see docs/DEMO.md). Multi-host: set
--coordinator_address/--num_processes/--process_id
(or run on a TPU pod, where jax.distributed discovers them) and every process runs this same
command.
"""
from __future__ import annotations

import os
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

import configs
from sdft_jax.cli import flag_error, quiet_dataset_building, run_cli

DEFAULT_CONFIG = os.path.join(os.path.dirname(configs.__file__), "demo.py")

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


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    _maybe_initialize_distributed()
    # Imported only now: the programs touch JAX backends, which must not start before
    # jax.distributed.initialize (a multi-host run).
    from sdft_jax.programs.errors import USER_ERRORS
    from sdft_jax.programs.registry import default_workdir, run_program
    quiet_dataset_building()
    try:
        config = _CONFIG.value
        config.get("program")  # a config file that failed to load raises here
    except OSError as e:
        print(f"error: {flag_error(e)}", file=sys.stderr)
        return 2
    try:
        run_program(config, _WORKDIR.value or default_workdir(config))
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def entry() -> None:
    run_cli(main)


if __name__ == "__main__":
    entry()
