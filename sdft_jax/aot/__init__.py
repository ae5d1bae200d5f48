"""Ahead-of-time compilation for TPU topologies and GPUs this machine does not have: `python -m sdft_jax.aot`."""
