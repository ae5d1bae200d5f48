"""LoRA: zero-B identity, the step trains adapters only over a bitwise-frozen base, EMA over the
factors, loss = the merged model's loss, PEFT export loaded by `peft` with equal logits."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sdft_jax.model import load_pretrained, lora
from sdft_jax.core.train_state import OptimConfig, init_state, make_optimizer
from sdft_jax.core.update import StepConfig, jit_train_step, make_train_step
from tests import hf_fixtures as hf
from tests.test_train_step import _batch, _copy

TARGETS = ("q", "v", "o", "gate", "down")


def _lora_model(path, rank=4, alpha=8.0, targets=TARGETS, seed=0, dtype="float32"):
    return load_pretrained(path, dtype=dtype, lora_rank=rank, lora_alpha=alpha, lora_targets=targets,
                           lora_seed=seed, tokenizer=False)


def _randomize_b(params, seed=1, scale=0.05):
    """Adapters as after training: B != 0, so every factor matters."""
    adapters, base = lora.split_adapters(params)
    keys = iter(jax.random.split(jax.random.key(seed), len(adapters["layers"])))
    layers = {k: (scale * jax.random.normal(next(keys), v.shape, v.dtype) if k.endswith("_lora_b") else v)
              for k, v in adapters["layers"].items()}
    return lora.combine(base, {"layers": layers})


def test_zero_b_gives_the_base_models_logits(tiny_qwen2):
    base = load_pretrained(tiny_qwen2, "float32", tokenizer=False)
    with_lora = _lora_model(tiny_qwen2)
    tokens, mask = hf.left_padded_batch()
    a, b = np.asarray(base(tokens, mask)), np.asarray(with_lora(tokens, mask))
    np.testing.assert_array_equal(a, b)
    adapters, _ = lora.split_adapters(with_lora.params)
    assert sorted(adapters["layers"]) == sorted(f"{t}_lora_{f}" for t in TARGETS for f in "ab")
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(adapters))


def test_bad_targets_name_the_valid_ones(tiny_qwen2):
    from sdft_jax.model import ModelConfigError
    with pytest.raises(ModelConfigError, match=r"model.lora.targets='q,qkv'.*q,k,v,o,gate,up,down"):
        _lora_model(tiny_qwen2, targets=("q", "qkv"))


@pytest.mark.parametrize("kind", ["tiny_qwen2", "tiny_llama"])
def test_peft_loads_our_adapter_export_with_equal_logits(kind, request, tmp_path):
    """The merged export (transformers) and the adapter export (peft on the HF base) both give our logits."""
    from peft import PeftModel
    path = request.getfixturevalue(kind)
    model = _lora_model(path, targets=("q", "k", "v", "o", "gate", "up", "down"))
    params = _randomize_b(model.params)
    tokens, mask = hf.left_padded_batch()
    ours = np.asarray(model.apply(params, jnp.asarray(tokens), jnp.asarray(mask)))
    lora.save_peft_adapter(str(tmp_path / "adapter"), params, model.config, path)
    model.save_pretrained(str(tmp_path / "merged"), params=params)

    real = mask.astype(bool)  # pad positions hold nothing either side agrees on

    def max_diff(ref):
        return float(np.abs(ref - ours)[real].max())
    peft_model = PeftModel.from_pretrained(hf.reload_hf(path), str(tmp_path / "adapter")).eval()
    assert max_diff(hf.hf_logits(peft_model, tokens, mask)) < 1e-4
    assert max_diff(hf.hf_logits(hf.reload_hf(str(tmp_path / "merged")), tokens, mask)) < 1e-4
    # The adapters change the logits, so the comparison above can fail.
    assert max_diff(np.asarray(model.apply(model.params, jnp.asarray(tokens), jnp.asarray(mask)))) > 1e-2


def _lora_state(model, sc, tx, params=None):
    adapters, base = lora.split_adapters(model.params if params is None else params)
    return init_state(adapters, tx, sc.teacher_kind, seed=0, frozen_params=base)


def test_lora_step_trains_adapters_only_over_a_bitwise_frozen_base_with_ema_over_the_factors(tiny_qwen2):
    sc = StepConfig(teacher_kind="ema", ema_alpha=0.25)
    model = _lora_model(tiny_qwen2)
    tx = make_optimizer(OptimConfig(lr=1e-2, warmup_steps=0, total_steps=100))
    state = _lora_state(model, sc, tx)
    base_before = _copy(state.frozen_params)
    step = jit_train_step(make_train_step(model.graphdef, sc, tx))
    batch = _batch()
    for _ in range(3):
        teacher_before = _copy(state.teacher_params)
        state, metrics = step(state, batch)
        for k, t in _copy(state.teacher_params)["layers"].items():  # EMA of A and of B, separately
            expected = 0.75 * teacher_before["layers"][k] + 0.25 * np.asarray(state.params["layers"][k])
            np.testing.assert_allclose(t, expected, rtol=1e-6, atol=1e-7)
    for k, v in _copy(state.frozen_params)["layers"].items():
        np.testing.assert_array_equal(v, base_before["layers"][k])
    np.testing.assert_array_equal(np.asarray(state.frozen_params["embed"]), base_before["embed"])
    moments = [x for x in jax.tree.leaves(state.opt_state) if x.ndim > 0]
    adapter_shapes = sorted(x.shape for x in jax.tree.leaves(state.params))
    assert sorted(x.shape for x in moments) == sorted(adapter_shapes * 2)  # Adam mu and nu, adapters only
    assert any(np.abs(np.asarray(x)).max() > 0 for k, x in state.params["layers"].items() if k.endswith("_b"))
    assert np.isfinite(float(metrics["loss"])) and float(metrics["teacher_student_distance"]) > 0


@pytest.mark.parametrize("method", ["sdft", "sft"])
def test_lora_loss_equals_the_merged_models_loss(tiny_qwen2, method):
    """Same batch, same teacher: the LoRA step's loss is the full model's with W + scale * A B."""
    sc = StepConfig(method=method, teacher_kind="live")
    model = _lora_model(tiny_qwen2)
    params = _randomize_b(model.params)
    tx = optax.sgd(0.0)
    # Copied: the step donates the state, and merged() shares the untouched base arrays.
    merged_params = jax.tree.map(jnp.copy, lora.merged(params, model.config))
    _, lora_metrics = jit_train_step(make_train_step(model.graphdef, sc, tx))(_lora_state(model, sc, tx, params),
                                                                             _batch())
    full = load_pretrained(tiny_qwen2, "float32", tokenizer=False)
    merged_state = init_state(merged_params, tx, "live", seed=0)
    _, full_metrics = jit_train_step(make_train_step(full.graphdef, sc, tx))(merged_state, _batch())
    np.testing.assert_allclose(float(lora_metrics["loss"]), float(full_metrics["loss"]), rtol=1e-5)
    assert float(lora_metrics["loss"]) > 0


def test_frozen_teacher_is_the_base_and_sharded_lora_step_equals_single_device(tiny_qwen2):
    """teacher.kind=frozen keeps the initial adapters (B = 0: the base); on a (2, 2, 2) mesh the
    LoRA step (adapters and base sharded by their logical axes) equals the single-device one."""
    from sdft_jax import sharding as shd
    from sdft_jax.model import param_shardings
    from sdft_jax.core.train_state import state_shardings
    sc = StepConfig(teacher_kind="frozen")
    tx = optax.sgd(1.0)
    batch = _batch(seed=3, B=8)
    model = _lora_model(tiny_qwen2)
    state = _lora_state(model, sc, tx, _randomize_b(model.params))
    teacher0 = _copy(state.teacher_params)
    single, single_metrics = jit_train_step(make_train_step(model.graphdef, sc, tx))(state, batch)
    for k, v in _copy(single.teacher_params)["layers"].items():
        np.testing.assert_array_equal(v, teacher0["layers"][k])

    mesh = shd.make_mesh(2, 2, 2)
    smodel = load_pretrained(tiny_qwen2, "float32", mesh=mesh, lora_rank=4, lora_alpha=8.0, lora_targets=TARGETS,
                             tokenizer=False)
    sstate = _lora_state(smodel, sc, tx, _randomize_b(smodel.params))
    train_sh, frozen_sh = lora.split_adapters(param_shardings(smodel.config, mesh, smodel.params))
    st_sh = state_shardings(sstate, train_sh, mesh, frozen_sh)
    b_sh = {k: shd.batch_sharding(mesh, v.ndim) for k, v in batch.items()}
    step = jit_train_step(make_train_step(smodel.graphdef, sc, tx), st_sh, b_sh, shd.replicated(mesh))
    out, metrics = step(jax.device_put(sstate, st_sh), jax.device_put(batch, b_sh))
    assert out.params["layers"]["q_lora_a"].sharding.spec == train_sh["layers"]["q_lora_a"].spec
    np.testing.assert_allclose(float(metrics["loss"]), float(single_metrics["loss"]), rtol=1e-5)
    worst = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
                                             out.params, single.params)))
    assert worst < 1e-5
