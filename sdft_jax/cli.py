"""The command line's plumbing, shared by the entry points (sdft_jax.main, sdft_jax.sweep, sdft_jax.aot):
absl with one-line errors for bad flags, quiet dataset building, a clean exit on an early signal."""
from __future__ import annotations

import os
import re
import signal
import sys

from absl import app, flags, logging


def quiet_dataset_building() -> None:
    """TFDS logs every shard it writes and draws tqdm bars; the run prints its own data summary."""
    logging.set_verbosity(logging.WARNING)
    import tensorflow_datasets as tfds  # here, not at the top: slow to import, and sdft_jax.aot builds no data
    tfds.disable_progress_bar()


def flag_error(e: BaseException) -> str:
    """One line for a bad --config file or --config.key, instead of a 60-line traceback."""
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
    signal.signal(signal.SIGTERM, _sigterm_before_training)
    signal.signal(signal.SIGINT, _sigterm_before_training)
    try:
        app.run(main)
    except Exception as e:  # noqa: BLE001
        if flags.FLAGS.is_parsed():
            raise  # a failure inside the run: keep its traceback
        print(f"error: {flag_error(e)}", file=sys.stderr)
        sys.exit(2)
