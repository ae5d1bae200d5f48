"""Shared timing helper for the benchmark scripts."""
import statistics
import time


def median_seconds(fn, repeats: int) -> float:
    """Median wall-clock of fn() over `repeats` calls after one warm-up call (compilation)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def alternating_median_seconds(fns: dict, repeats: int) -> dict:
    """{name: median seconds} of each fn, one warm-up call each, then the fns alternate call by call
    (noise on a shared box hits every variant alike)."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}
