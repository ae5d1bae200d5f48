"""The experiments' statistics against SciPy (present in the test install through lm_eval)."""
import numpy as np
import pytest

from sdft_jax.experiments import stats

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("df", [1, 2, 4, 9, 30])
def test_t_distribution_matches_scipy(df):
    for t in (-6.0, -2.1, -0.3, 0.0, 0.7, 2.776, 12.0):
        assert stats.t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), abs=1e-10)
    for p in (0.025, 0.5, 0.9, 0.975):
        assert stats.t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), abs=1e-8)


def test_summary_and_paired_test_match_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.5, 0.2, 5), rng.normal(0.3, 0.2, 5)
    s = stats.summary(a)
    lo, hi = scipy_stats.t.interval(0.95, 4, loc=a.mean(), scale=scipy_stats.sem(a))
    assert s["n"] == 5 and s["std"] == pytest.approx(a.std(ddof=1)) and s["ci95"] == pytest.approx([lo, hi])
    p = stats.paired(list(a), list(b))
    assert p["p"] == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue, rel=1e-8)
    assert p["positive"] + p["negative"] + p["zero"] == 5 and p["mean"] == pytest.approx((a - b).mean())
    # Undefined pairs are dropped, not counted as zero.
    assert stats.paired([1.0, None, 3.0], [0.5, 1.0, None])["n"] == 1
    assert stats.summary([])["mean"] is None and stats.summary([0.2])["ci95"] is None


def test_identical_differences_have_no_p_value():
    assert stats.paired([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])["p"] is None  # std 0: no t statistic


@pytest.mark.parametrize("k,n", [(0, 40), (7, 40), (31, 40), (40, 40), (1, 3)])
def test_wilson_interval_matches_scipy(k, n):
    ci = scipy_stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert stats.wilson(k, n) == pytest.approx([ci.low, ci.high], abs=1e-12)
    assert stats.wilson(0, 0) is None


@pytest.mark.parametrize("gained,lost", [(0, 0), (0, 1), (1, 0), (3, 3), (2, 9), (11, 2), (0, 14), (25, 40)])
def test_exact_mcnemar_is_scipys_two_sided_binomial_test_on_the_discordant_pairs(gained, lost):
    want = 1.0 if gained + lost == 0 else scipy_stats.binomtest(gained, gained + lost, 0.5).pvalue
    assert stats.mcnemar_exact(gained, lost) == pytest.approx(want, rel=1e-12)
