"""Small-sample statistics for the experiments' reports: mean, sample std, Student-t intervals, the
paired t-test, Wilson intervals and the exact McNemar test, in NumPy and the standard library (no
SciPy at run time; tests/test_stats.py checks them against scipy.stats)."""
from __future__ import annotations

import math

import numpy as np


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (Lentz's method)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    # I_x(a, b) = 1 - I_(1-x)(b, a): near t = 0 the second form keeps t's precision (x rounds to 1).
    x = t * t / (df + t * t)
    tail = 0.5 * (1.0 - betainc(0.5, df / 2.0, x)) if x < 0.5 else 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (bisection on t_cdf; p in (0, 1))."""
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def summary(values) -> dict:
    """n, mean, sample std (ddof=1) and the 95% Student-t interval of the mean (None when n < 2)."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci95": None}
    if n == 1:
        return {"n": 1, "mean": float(x[0]), "std": None, "ci95": None}
    std = float(x.std(ddof=1))
    half = t_quantile(0.975, n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": float(x.mean()), "std": std, "ci95": [float(x.mean() - half), float(x.mean() + half)]}


def paired(a, b) -> dict:
    """a - b over the pairs where both are defined: summary(), the paired t-test's two-sided p and
    how many differences are positive, zero and negative."""
    d = [x - y for x, y in zip(a, b) if x is not None and y is not None and np.isfinite(x) and np.isfinite(y)]
    out = summary(d)
    out.update(positive=sum(v > 0 for v in d), zero=sum(v == 0 for v in d), negative=sum(v < 0 for v in d), p=None)
    if out["n"] >= 2 and out["std"] > 0:  # identical differences have no t statistic: p stays None
        t = out["mean"] / (out["std"] / math.sqrt(out["n"]))
        out["p"] = float(2 * t_cdf(-abs(t), out["n"] - 1))
    return out


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> list[float] | None:
    """The 95% Wilson score interval of a proportion (k of n questions right; None when n = 0): unlike
    the normal approximation it stays inside [0, 1] and is not empty at 0 or n successes."""
    if n <= 0:
        return None
    p, z2 = successes / n, z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return [max(0.0, center - half), min(1.0, center + half)]


def mcnemar_exact(gained: int, lost: int) -> float:
    """The exact McNemar test's two-sided p for paired right/wrong outcomes: of the gained + lost
    discordant questions, a split at least this uneven under Binomial(gained + lost, 1/2)."""
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(gained, lost) + 1)) / 2 ** n
    return min(1.0, 2 * tail)
