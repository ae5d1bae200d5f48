"""Where built inputs are cached: the demo's pretrained base, configs/tiny.py's files."""
import os


def cache_root() -> str:
    return os.environ.get("SDFT_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "sdft_jax"))
