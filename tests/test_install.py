"""The install path: setup.py's ranges keep a preinstalled accelerator JAX; CI's exact pins lie inside
them; the device installer carries only what the GPU image lacks or has out of range."""
import importlib.metadata as md
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


def _extra_requires(extra: str) -> list[Requirement]:
    reqs = [Requirement(r) for r in md.requires("sdft_jax") or []]
    return [r for r in reqs if r.marker is not None and r.marker.evaluate({"extra": extra})]


@pytest.mark.parametrize("extra", ["tpu", "gpu"])
def test_accelerator_extras_keep_the_base_jax_range(extra):
    jax_base = next(r for r in device_deps.install_requires() if r.name == "jax")
    jax_extra = next(r for r in _extra_requires(extra) if r.name == "jax")
    assert jax_extra.specifier == jax_base.specifier and jax_extra.extras == {"tpu" if extra == "tpu" else "cuda12"}


@pytest.mark.parametrize("extra,wanted", [("tpu", {"libtpu", "gcsfs"}), ("gpu", {"jax-cuda12-plugin"}),
                                          ("wandb", {"wandb"})])
def test_each_extra_resolves_with_the_ci_pins(extra, wanted):
    """pip's own resolver, dry run (metadata only; nothing installed) of the project with the
    extra under CI's pins: it resolves, brings its accelerator packages, and keeps jax in range."""
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                          "--report", "-", "-c", os.path.join(ROOT, "constraints.txt"), f"{ROOT}[{extra}]"],
                         capture_output=True, text=True, timeout=300)
    if out.returncode and any(s in out.stderr for s in ("NewConnectionError", "Network is unreachable",
                                                         "Temporary failure in name resolution")):
        pytest.skip(f"the package registry is unreachable: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 0, out.stderr[-2000:]
    got = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(out.stdout)["install"]}
    assert wanted <= set(got), sorted(got)
    jax_base = next(r for r in device_deps.install_requires() if r.name == "jax")
    assert jax_base.specifier.contains(Version(got["jax"])), got["jax"]


def test_ci_script_stops_in_one_line_without_python_3_12(tmp_path):
    out = subprocess.run(["bash", os.path.join(ROOT, ".ci", "run")], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PY312": str(tmp_path / "no-python"), "STACKS": "py312-newest"})
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "error: .ci/run: no Python 3.12 (tried python3.12 on PATH, /root/.pyenv/versions/3.12.*, "
        "/usr/bin/python3.12; set PY312=...)"]
