"""Before the first step: does each compiled program fit in the memory that is free?

A run that cannot fit used to be OOM-killed without a word (SIGKILL, rc 137) minutes in. The
compiler's memory analysis of each program (sampler, train step) says what it will allocate on top
of its arguments (already resident): temporaries + outputs - donated buffers. That is compared with
the free memory of the device (GPU/TPU: bytes_limit - bytes_in_use) or, on CPU, of the host
(MemAvailable). Too little stops the run with one line naming both figures and what to change.
"""
from __future__ import annotations

import jax

GIB = 2 ** 30
HINT = ("lower it with model.remat=full, more batch.micro_batches, fewer batch.prompts_per_step, or shorter "
        "sampling.max_new_tokens / data.max_student_prompt / data.max_teacher_prompt (benchmarks/memory.py "
        "shows the figures without running)")


class MemoryPlanError(ValueError):
    pass


def free_bytes() -> tuple[int, str] | None:
    """(free bytes, where) of the first local device; None when it cannot be read."""
    device = jax.local_devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return stats["bytes_limit"] - stats.get("bytes_in_use", 0), f"{device.device_kind} memory"
        return None
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info["MemAvailable"], "host memory (MemAvailable)"
    except (OSError, KeyError, ValueError):
        return None


def new_bytes(compiled) -> tuple[int, int] | None:
    """(bytes the program allocates beyond its arguments, argument bytes), per device."""
    m = compiled.memory_analysis()
    if m is None:
        return None
    return m.temp_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes, m.argument_size_in_bytes


def check_fits(name: str, jitted, *args, headroom: float = 0.9, free=None) -> None:
    """Compiles `jitted` for `args` (the later call reuses this executable) and raises MemoryPlanError
    when it needs more than `headroom` x the free memory."""
    need = new_bytes(jitted.lower(*args).compile())
    free = free if free is not None else free_bytes()
    if need is None or free is None:
        return
    (extra, resident), (available, where) = need, free
    if extra > headroom * available:
        raise MemoryPlanError(
            f"the {name} needs {_size(extra)} beyond its {_size(resident)} of arguments, but only "
            f"{_size(available)} of {where} is free: {HINT}")


def verdict(peaks: dict[str, int], capacity: int, where: str) -> tuple[bool, str]:
    """One line from compiled programs' peak bytes per device (sdft_jax.aot: the TPU / GPU compiler's
    count, from a CPU box): does the largest fit `capacity` bytes of `where`, and if not, what to change."""
    name, need = max(peaks.items(), key=lambda kv: kv[1])
    if need <= capacity:
        return True, (f"yes: fits {where}: the largest program, the {name}, peaks at {_size(need)} per chip of "
                      f"{_size(capacity)}")
    return False, f"no: does not fit {where}: the {name} peaks at {_size(need)} per chip of {_size(capacity)}: {HINT}"


def _size(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / 2 ** 20:.1f} MiB"
