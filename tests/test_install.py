"""The install path: setup.py's ranges keep a preinstalled accelerator JAX; CI's exact pins lie inside
them; the device installer carries only what the GPU image lacks or has out of range."""
import json
import os
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import device_deps  # noqa: E402

# The lent GPU machines' preinstalled versions (device notes, pip list, 2026-11).
GPU_IMAGE = {"jax": "0.11.2", "numpy": "2.5.2", "transformers": "5.17.0", "safetensors": "0.8.0"}


def _pins() -> dict[str, str]:
    out = {}
    for line in open(os.path.join(ROOT, "constraints.txt")):
        if line.strip() and not line.startswith("#"):
            name, version = line.strip().split("==")
            out[name.lower().replace("_", "-")] = version
    return out


def test_ranges_admit_ci_pins_and_the_gpu_image():
    pins = _pins()
    for req in device_deps.install_requires():
        name = req.name.lower().replace("_", "-")
        assert req.specifier.contains(Version(pins[name])), (req, pins[name])
        if name in GPU_IMAGE:
            assert req.specifier.contains(Version(GPU_IMAGE[name])), (req, GPU_IMAGE[name])


def test_pip_keeps_every_preinstalled_package_that_satisfies_the_ranges():
    """pip's own resolver, offline, on this environment (which holds CPU JAX 0.10.2): nothing to
    install or replace. Before the ranges, `jax==0.10.2` made pip replace a GPU host's JAX."""
    reqs = [str(r) for r in device_deps.install_requires()]
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--quiet",
                          "--report", "-", *reqs], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["install"] == [], [i["metadata"]["name"] for i in report["install"]]


@pytest.mark.parametrize("wheel,installed,spec,todo", [
    ("jax-0.10.2-py3-none-any.whl", "0.11.2", "jax>=0.10.2,<0.12", False),  # the device's CUDA JAX stays
    ("flax-0.12.8-py3-none-any.whl", "0.10.0", "flax>=0.12.8,<0.14", True),  # too old: ours
    ("flax-0.12.8-py3-none-any.whl", "0.13.1", "flax>=0.12.8,<0.14", False),
    ("ml_collections-1.1.0-py3-none-any.whl", None, "ml-collections>=1.1,<2", True),  # missing
    ("promise-2.3-py3-none-any.whl", "2.3", None, False),  # a dependency already there
])
def test_device_installer_decisions(wheel, installed, spec, todo):
    got, why = device_deps.decide(wheel, installed, Requirement(spec) if spec else None)
    assert got is todo, why


def test_wheelhouse_closure_skips_what_the_image_has():
    wanted = {n for n in device_deps.closure(device_deps.install_requires())
              if n not in device_deps.DEVICE_PACKAGES or n in device_deps.FALLBACK}
    assert {"ml-collections", "tensorflow-datasets", "tensorboardx", "flax"} <= wanted
    assert not {"jax", "jaxlib", "numpy", "torch", "transformers"} & wanted
