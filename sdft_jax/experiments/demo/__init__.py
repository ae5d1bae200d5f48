"""The built-in demo: a generated in-context-learning world where SDFT vs SFT continual learning
runs on a laptop CPU in minutes (docs/DEMO.md). `python -m sdft_jax.main` runs it."""
