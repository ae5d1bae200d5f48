"""Length buckets: prompts are padded to one of a few lengths, so each program compiles a few shapes."""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np


@functools.lru_cache(maxsize=None)
def buckets_up_to(max_len: int, smallest: int = 64, growth: float = 2.0) -> tuple[int, ...]:
    """Lengths from `smallest` up to (and including) max_len, each ~`growth` times the last,
    rounded up to a multiple of 32: growth 2 = powers of two (a batch wastes up to half its
    tokens on padding); 1.5 = 64, 96, 160, 256, 384, ... (up to a third, more compiled shapes)."""
    if not 1.0 < growth <= 4.0:
        raise ValueError(f"bucket growth {growth} must be in (1, 4]")
    out, b = [], smallest
    while b < max_len:
        out.append(b)
        b = max(b + 32, -(-int(b * growth) // 32) * 32)
    return tuple(out + [max_len])


def bucket_length(longest: int, buckets: Sequence[int], what: str) -> int:
    for b in sorted(buckets):
        if b >= longest:
            return b
    raise ValueError(f"{what}: {longest} tokens exceed the largest length bucket {max(buckets)}")


def left_pad(rows: list[list[int]], length: int, pad: int):
    tokens = np.full((len(rows), length), pad, np.int32)
    mask = np.zeros((len(rows), length), np.int32)
    for i, r in enumerate(rows):
        if r:
            tokens[i, length - len(r):], mask[i, length - len(r):] = r, 1
    return tokens, mask


def right_pad(rows: list[list[int]], length: int, pad: int):
    tokens = np.full((len(rows), length), pad, np.int32)
    mask = np.zeros((len(rows), length), np.int32)
    for i, r in enumerate(rows):
        tokens[i, : len(r)], mask[i, : len(r)] = r, 1
    return tokens, mask


def pad_to_bucket(sequences: Sequence[Sequence[int]], buckets: Sequence[int], pad_id: int = 0,
                  min_batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Left-pads token lists to the smallest bucket length that fits the longest one; at least
    `min_batch` rows (the extra ones all padding), so a fixed batch compiles once."""
    longest = max(len(s) for s in sequences)
    if longest > max(buckets):
        raise ValueError(f"prompt of {longest} tokens exceeds the largest length bucket {max(buckets)}")
    rows = [list(s) for s in sequences] + [[]] * max(0, min_batch - len(sequences))
    return left_pad(rows, bucket_length(longest, buckets, "prompt"), pad_id)
