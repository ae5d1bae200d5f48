"""What a run needs around the algorithm: checkpoints, logs, locks, caches, memory checks, the host."""
