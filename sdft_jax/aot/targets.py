"""The chips `python -m sdft_jax.aot --topology=CHIP:SHAPE` compiles for, and their devices.

TPU devices come from libtpu's topology description (no TPU needed); GPU devices from XLA's GPU
compiler and a target description (XLA's gpu_specs format: xla/tools/hlo_opt/gpu_specs), no GPU
needed. Peaks are the vendors' published dense bf16 figures per chip and HBM bandwidths:
  TPU  https://cloud.google.com/tpu/docs/v4, /v5e, /v5p, /v6e (system architecture pages)
  GPU  https://www.nvidia.com/en-us/data-center/h100/ (SXM), /h200/, /l4/ (datasheets; dense = half
       the sparsity figure)
"""
from __future__ import annotations

import dataclasses
import math
import re

from jax.experimental import topologies

GIB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    platform: str  # tpu | gpu
    hbm_bytes: int
    peak_flops: float  # dense bf16 FLOP/s per chip
    hbm_bytes_per_s: float
    source: str


CHIPS = {
    "v4": Chip("TPU v4", "tpu", 32 * GIB, 275e12, 1228e9, "https://cloud.google.com/tpu/docs/v4"),
    "v5e": Chip("TPU v5e", "tpu", 16 * GIB, 197e12, 819e9, "https://cloud.google.com/tpu/docs/v5e"),
    "v5p": Chip("TPU v5p", "tpu", 95 * GIB, 459e12, 2765e9, "https://cloud.google.com/tpu/docs/v5p"),
    "v6e": Chip("TPU v6e", "tpu", 32 * GIB, 918e12, 1640e9, "https://cloud.google.com/tpu/docs/v6e"),
    "h100": Chip("NVIDIA H100 80GB HBM3 (SXM)", "gpu", 84978434048, 989e12, 3350e9,
                 "https://www.nvidia.com/en-us/data-center/h100/"),
    "h200": Chip("NVIDIA H200 141GB HBM3e (SXM)", "gpu", 150754820096, 989e12, 4800e9,
                 "https://www.nvidia.com/en-us/data-center/h200/"),
    "l4": Chip("NVIDIA L4 24GB (a 24 GB card)", "gpu", 24152899584, 121e12, 300e9,
               "https://www.nvidia.com/en-us/data-center/l4/"),
}

# XLA's GPU target descriptions (GpuTargetConfigProto text). H100 from XLA's gpu_specs/h100_sxm.txtpb;
# H200 the same chip with its memory and bandwidth; L4 (sm_89, 58 SMs) from its datasheet. cuDNN 9.7 /
# CUDA 12.8: what jax[cuda12] 0.11 ships (cuDNN flash attention needs cuDNN 9).
_SM = dict(h100=(132, 233472, 2048, 232448, 52428800, 1.98, 9, 0), h200=(132, 233472, 2048, 232448, 52428800, 1.98, 9, 0),
           l4=(58, 102400, 1536, 101376, 50331648, 2.04, 8, 9))


def gpu_target_config(chip: str) -> str:
    cores, smem_core, threads_core, smem_optin, l2, ghz, major, minor = _SM[chip]
    c = CHIPS[chip]
    return f"""gpu_device_info {{
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: {smem_core} threads_per_core_limit: {threads_core} core_count: {cores}
  fpus_per_core: 128 block_dim_limit_x: 2147483647 block_dim_limit_y: 65535 block_dim_limit_z: 65535
  memory_bandwidth: {int(c.hbm_bytes_per_s)} l2_cache_size: {l2} clock_rate_ghz: {ghz}
  device_memory_size: {c.hbm_bytes} shared_memory_per_block_optin: {smem_optin}
  cuda_compute_capability {{ major: {major} minor: {minor} }}
  registers_per_core_limit: 65536 registers_per_block_limit: 65536
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 7 }}
runtime_version {{ major: 12 minor: 8 }}
device_description_str: "{c.name}"
"""


class TopologyError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Target:
    chip_key: str
    shape: str  # "2x2x1"

    @property
    def chip(self) -> Chip:
        return CHIPS[self.chip_key]

    @property
    def name(self) -> str:
        return f"{self.chip_key}:{self.shape}"

    @property
    def num_chips(self) -> int:
        return math.prod(int(x) for x in self.shape.split("x"))


EXAMPLES = "v5p:2x2x1 (v5p-8), v5p:2x2x2 (v5p-16), v5p:4x4x4, v5e:4x4 (v5e-16), v6e:2x2, v4:2x2x1, h100:1x1x1, h200:1x1x1, l4:1x1x1"


def parse_topology(text: str) -> Target:
    """'v5p:2x2x1' -> Target; anything else is one line listing the known chips."""
    m = re.fullmatch(r"([a-z0-9]+):(\d+(?:x\d+){1,2})", text.strip().lower())
    if not m or m.group(1) not in CHIPS:
        raise TopologyError(f"--topology={text!r}: expected CHIP:SHAPE with CHIP one of {', '.join(CHIPS)} "
                            f"(e.g. {EXAMPLES})")
    if CHIPS[m.group(1)].platform == "gpu" and len(m.group(2).split("x")) != 3:
        raise TopologyError(f"--topology={text!r}: a GPU shape is HOSTSxNODESxGPUS, e.g. {m.group(1)}:1x1x1")
    return Target(m.group(1), m.group(2))


def target_devices(target: Target) -> list:
    """The target's devices, from its compiler (libtpu / XLA:GPU), on a machine without them."""
    try:
        if target.chip.platform == "tpu":
            topo = topologies.get_topology_desc(topology_name=target.name, platform="tpu")
        else:
            topo = topologies.get_topology_desc(platform="cuda", target_config=gpu_target_config(target.chip_key),
                                                topology=target.shape)
    except Exception as e:  # noqa: BLE001 - the compilers' errors are free text
        raise TopologyError(f"--topology={target.name}: {_why(e, target.chip.platform)}") from None
    return list(topo.devices)


def _why(e: BaseException, platform: str) -> str:
    text = " ".join(str(e).split())[:300]
    if platform == "tpu" and ("libtpu" in text.lower() or "unknown backend" in text.lower()
                              or "not found" in text.lower()):
        return (f"the TPU compiler (libtpu) is not in this Python ({text}); install it in a separate venv: "
                f"pip install -e . \"jax[tpu]\" (docs/PERFORMANCE.md, 'TPU, compiled ahead of time')")
    if platform == "gpu" and ("cuda" in text.lower() or "plugin" in text.lower()):
        return (f"the CUDA compiler plugin is not in this Python ({text}); make its venv with "
                f"benchmarks/aot_gpu_venv.sh")
    return text
