import numpy as np
import pytest

from sdft_jax.eval.continual_metrics import continual_metrics, plot


def test_metrics_on_a_hand_made_matrix(tmp_path):
    base = [0.1, 0.2, 0.3]
    R = [[0.9, 0.25, 0.3],
         [0.7, 0.8, 0.35],
         [0.6, 0.6, 0.9]]
    m = continual_metrics(R, base)
    assert m["average_accuracy"] == pytest.approx(0.7)
    assert m["backward_transfer"] == pytest.approx(((0.6 - 0.9) + (0.6 - 0.8)) / 2)
    assert m["forward_transfer"] == pytest.approx(((0.25 - 0.2) + (0.35 - 0.3)) / 2)
    norm = np.asarray(m["normalized"])
    assert norm[0, 0] == pytest.approx(1.0) and norm[2, 0] == pytest.approx(0.5 / 0.8)
    assert norm[2, 2] == pytest.approx(1.0)
    plot(R, base, ["a", "b", "c"], ["s1", "s2", "s3"], str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 1000
