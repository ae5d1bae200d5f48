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
