"""sdft_jax.programs.compare: the choice of each method's sweep point and the config checks."""
import pytest

from sdft_jax.programs.compare import check, select
from sdft_jax.resolve import ConfigError
from tests.test_train import _tiny


def _row(lr, val, lenient, status="done"):
    return {"point": {"optim.lr": lr}, "status": status, "metrics": {"eval/val": val, "eval/val/lenient": lenient}}


def test_select_takes_the_best_validation_score_then_the_tie_break_then_the_earlier_point():
    rows = [_row(1e-5, 0.2, 0.9), _row(3e-5, 0.5, 0.1), _row(1e-4, 0.5, 0.4), _row(3e-4, 0.9, 1.0, "preempted")]
    assert select(rows, "eval/val", "eval/val/lenient")["point"] == {"optim.lr": 1e-4}
    assert select(rows, "eval/val")["point"] == {"optim.lr": 3e-5}  # no tie break: the earlier point
    with pytest.raises(ValueError, match="did not report eval/other"):
        select(rows, "eval/other")
    with pytest.raises(ValueError, match="no finished sweep point"):
        select(rows[3:], "eval/val")


def test_check_names_the_missing_or_wrong_setting():
    c = _tiny()
    c.program = "compare"
    with pytest.raises(ConfigError, match="needs a compare section"):
        check(c)
    c.compare = dict(methods=["sdft"], sweep=["optim.lr=[1e-3]"], select="val", evals={
        "heldout": dict(type="accuracy", split="test")})
    with pytest.raises(ConfigError, match=r"compare.select='val': not an evaluator of config.evals"):
        check(c)
    c.evals.val = dict(type="accuracy", split="validation")
    check(c)
    c.compare.evals.bad = dict(type="accuracy", splitt="x")
    with pytest.raises(ValueError, match=r"evals.bad: unknown argument\(s\) \['splitt'\]"):
        check(c)
    del c.compare.evals["bad"]
    c.compare.keep = "best"
    with pytest.raises(ConfigError, match=r"compare.keep='best': expected 'all' or 'chosen'"):
        check(c)
    c.compare.keep = "chosen"
    c.compare.plot = ["heldout", "oracle/lenient"]
    with pytest.raises(ConfigError, match="column 'oracle/lenient' is not an evaluator"):
        check(c)
