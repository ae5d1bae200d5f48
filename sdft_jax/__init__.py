"""sdft_jax: Self-Distillation Fine-Tuning (SDFT) in JAX/Flax."""
__version__ = "0.1.0"
