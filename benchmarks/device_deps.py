"""What the GPU machine lacks, as wheels: build a wheelhouse here, install from it there.

    python benchmarks/device_deps.py make DIR     # CPU side (network): Python 3.12 manylinux wheels
    python benchmarks/device_deps.py install DIR TARGET   # device side (no network): pip --target

`make` walks the dependency closure of setup.py's install_requires as installed in THIS environment
(the versions CI tests), for Python 3.12 on Linux, and downloads, without dependencies, the wheels of
every package the device image does not list (DEVICE_PACKAGES, from the device notes, 2026-11-17)
plus FALLBACK (our JAX-ecosystem pins, used only when the device's own version is outside our range).
`install` keeps every preinstalled package that satisfies setup.py's range (the device's CUDA JAX
above all) and installs a wheel only for what is missing or out of range; it prints each decision.
"""
from __future__ import annotations

import ast
import importlib.metadata as md
import os
import subprocess
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_MIB = 60
# `pip list` names of the GPU image ('cuda', read 2026-11-17; /work/.library/device/KINDS.md).
DEVICE_PACKAGES = set(canonicalize_name(n) for n in """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops
equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch
grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig
interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime
onnxscript opencv-python-headless opt-einsum opt-einsum-fx optax optimistix orbax-checkpoint
packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache
protobuf psutil py-cpuinfo pyarrow pybind11 pygments pyparsing pyproject-hooks pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentence-transformers sentencepiece setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
threadpoolctl tifffile tiktoken timm tokenizers toolz torch torch-geometric torchaudio torchdiffeq
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect
urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())
FALLBACK = {"flax", "optax", "orbax-checkpoint"}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]
TARGET_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "platform_system": "Linux",
              "sys_platform": "linux", "os_name": "posix", "platform_machine": "x86_64",
              "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def install_requires() -> list[Requirement]:
    """setup.py's INSTALL_REQUIRES, read without running setup()."""
    tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "INSTALL_REQUIRES":
            return [Requirement(s) for s in ast.literal_eval(node.value)]
    raise RuntimeError("setup.py: INSTALL_REQUIRES not found")


def closure(reqs: list[Requirement]) -> dict[str, str]:
    """{canonical name: installed version} of reqs and what they need on the target (not looking
    below packages the device image already has)."""
    out, todo = {}, [(r, tuple(r.extras)) for r in reqs]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if name in out:
            continue
        out[name] = md.version(req.name)
        if name in DEVICE_PACKAGES:  # the image resolved its own dependencies
            continue
        for s in md.requires(req.name) or []:
            sub = Requirement(s)
            if sub.marker is None or any(sub.marker.evaluate({**TARGET_ENV, "extra": e}) for e in extras or ("",)):
                todo.append((sub, tuple(sub.extras)))
    return out


def make(directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    wanted = {n: v for n, v in closure(install_requires()).items() if n not in DEVICE_PACKAGES or n in FALLBACK}
    for name, version in sorted(wanted.items()):
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp", "-d", directory, f"{name}=={version}"]
        for p in PLATFORMS:
            cmd += ["--platform", p]
        if subprocess.run(cmd, stderr=subprocess.DEVNULL).returncode:  # sdist only (promise): a pure wheel
            subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", directory,
                            f"{name}=={version}"], check=True)
    size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory)) / 2 ** 20
    print(f"wheelhouse {directory}: {len(os.listdir(directory))} wheels, {size:.1f} MiB")
    if size > MAX_MIB:
        raise SystemExit(f"wheelhouse is {size:.1f} MiB > {MAX_MIB} MiB (the device call carries 64 MiB in all)")


def wheel_name_version(filename: str) -> tuple[str, str]:
    name, version = filename.split("-")[:2]
    return canonicalize_name(name), version


def decide(wheel: str, installed: str | None, spec: Requirement | None) -> tuple[bool, str]:
    """(install?, why) for one wheel given the preinstalled version and our range (if top-level)."""
    name, version = wheel_name_version(wheel)
    if installed is None:
        return True, f"install {name} {version} (missing)"
    if spec is not None and not spec.specifier.contains(Version(installed), prereleases=True):
        return True, f"install {name} {version} (preinstalled {installed} is outside {spec.specifier})"
    return False, f"keep {name} {installed} (preinstalled{', satisfies ' + str(spec.specifier) if spec else ''})"


def _installed(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def install(directory: str, target: str) -> None:
    specs = {canonicalize_name(r.name): r for r in install_requires()}
    chosen = []
    for wheel in sorted(f for f in os.listdir(directory) if f.endswith(".whl")):
        name, _ = wheel_name_version(wheel)
        todo, why = decide(wheel, _installed(name), specs.get(name))
        print(f"[device_deps] {why}", flush=True)
        if todo:
            chosen.append(os.path.join(directory, wheel))
    for name, req in specs.items():  # the rest of our ranges, checked against the image
        have = _installed(name)
        if have is not None and not req.specifier.contains(Version(have), prereleases=True) and \
                not any(wheel_name_version(os.path.basename(w))[0] == name for w in chosen):
            print(f"[device_deps] WARNING {name} {have} is outside {req.specifier} and no wheel was carried")
    if chosen:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", target, *chosen], check=True)


if __name__ == "__main__":
    verb, args = sys.argv[1], sys.argv[2:]
    if verb == "make" and len(args) == 1:
        make(args[0])
    elif verb == "install" and len(args) == 2:
        install(*args)
    else:
        raise SystemExit(__doc__)
