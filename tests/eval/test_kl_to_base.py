"""The kl_to_base evaluator against transformers (torch): the same sampled sequences scored by the
perturbed and the base model, exact per-token KL summed over each completion, in float64 NumPy."""
import jax
import numpy as np

from sdft_jax.eval.kl_to_base import KLToBase
from sdft_jax.model import load_pretrained
from tests import hf_fixtures as hf
from tests.eval.test_evaluators import ROWS, _ctx
from tests.test_train import _tiny


def _log_softmax(x):
    x = x.astype(np.float64)
    return x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True)


def test_kl_to_base_is_zero_at_the_base_and_matches_transformers(tiny_qwen2, tmp_path):
    model = load_pretrained(tiny_qwen2, dtype="float32")
    c = _tiny(**{"sampling.max_new_tokens": 8})
    ev = KLToBase("kl", _ctx(model, c, {"train": ROWS}), split="train", batch_size=4)
    assert ev(model.params)["kl"] == 0.0

    moved = jax.tree.map(lambda x: x * 1.3, model.params)
    got = ev(moved)["kl"]
    model.save_pretrained(str(tmp_path / "moved"), params=moved)
    ref_moved, ref_base = hf.reload_hf(str(tmp_path / "moved")), hf.reload_hf(tiny_qwen2)
    per_row = []
    for tokens, mask, completion, cmask in ev.last:
        seq = np.concatenate([np.asarray(tokens), np.asarray(completion)], 1)
        seq_mask = np.concatenate([np.asarray(mask), np.asarray(cmask)], 1)
        P, N = tokens.shape[1], completion.shape[1]
        lp = _log_softmax(hf.hf_logits(ref_moved, seq, seq_mask))[:, P - 1:P + N - 1]
        lq = _log_softmax(hf.hf_logits(ref_base, seq, seq_mask))[:, P - 1:P + N - 1]
        kl = (np.exp(lp) * (lp - lq)).sum(-1)
        per_row.extend((kl * np.asarray(cmask)).sum(1))
    assert len(per_row) == len(ROWS)
    want = float(np.mean(per_row))
    assert want > 0.01  # the perturbation moved the policy
    np.testing.assert_allclose(got, want, rtol=1e-3)


def test_base_path_measures_against_another_checkpoint(tiny_qwen2, tmp_path):
    """A continual stage's model measured against the first stage's base: the same KL as when the
    base is the run's own starting point (checked against transformers above), same samples."""
    base = load_pretrained(tiny_qwen2, dtype="float32")
    c = _tiny(**{"sampling.max_new_tokens": 8})
    moved_params = jax.tree.map(lambda x: x * 1.3, base.params)
    want = KLToBase("kl", _ctx(base, c, {"train": ROWS}), split="train", batch_size=4)(moved_params)["kl"]
    base.save_pretrained(str(tmp_path / "moved"), params=moved_params)
    moved = load_pretrained(str(tmp_path / "moved"), dtype="float32")
    ev = KLToBase("kl", _ctx(moved, c, {"train": ROWS}), split="train", batch_size=4, base_path=tiny_qwen2)
    assert want > 0.01
    np.testing.assert_allclose(ev(moved.params)["kl"], want, rtol=1e-5)


def test_kl_to_base_in_a_run_grows_from_zero(tmp_path):
    """Declared in config.evals; the base copy survives the step's donation of the state."""
    from sdft_jax.programs.train import run
    from tests.test_train import _metrics
    c = _tiny(**{"log.samples_every": 0})
    c.evals.kl = dict(type="kl_to_base", examples=8, max_new_tokens=8, every=3)
    run(c, str(tmp_path / "w"))
    kl = [r["eval/kl"] for r in _metrics(str(tmp_path / "w")) if "eval/kl" in r]
    assert len(kl) == 2 and 0.0 < kl[0] and np.isfinite(kl[1])
