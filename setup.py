"""sdft_jax: Self-Distillation Fine-Tuning (SDFT) in JAX/Flax."""
from setuptools import find_packages, setup

# Exact pins: JAX/Flax/Orbax APIs move quickly (mesh axis types, NNX pytree mode, orbax policies).
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "transformers==5.23.0",
    "tensorflow-datasets==4.9.10",
    "ml-collections==1.1.0",
    "safetensors==0.8.0",
    "numpy==2.4.6",
    # tensorflow-datasets needs it at import time and does not declare it on Python 3.11.
    "importlib_resources==7.1.0",
    "tensorboardX==2.6.4",
    # Imported directly (also pulled in by the packages above).
    "absl-py==2.5.1",
    "etils[epath]==1.15.0",
    "ml_dtypes==0.6.0",
    "matplotlib==3.10.7",  # continual-learning plots
]
TEST_REQUIRES = [
    "pytest==9.2.0",
    # CPU build; this exact pin installs from the machine's local wheel (a bare `torch` pulls CUDA).
    "torch==2.13.0",
    # Needed by ../shared/tools/real_models.py to build the real checkpoints offline.
    "gguf==0.19.0",
    "accelerate==1.15.0",
    "tiktoken==0.14.0",
    # The lm-evaluation-harness backend (sdft_jax.eval.lm_eval_backend) is tested on a local task.
    "lm_eval==0.4.13",
]

setup(
    name="sdft_jax",
    version="0.1.0",
    description="Self-Distillation Fine-Tuning (continual learning from demonstrations) in JAX/Flax",
    packages=find_packages(include=["sdft_jax", "sdft_jax.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES},
)
