"""step.py: the fused step equals the separate programs (sampler, assembly, train step), on one
device and on a (2, 2, 2) mesh, compiles once per bucket, and decodes without weight collectives."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sdft_jax import sharding as shd
from sdft_jax.runtime.hlo import collectives_in_loops
from sdft_jax.model import load_pretrained, param_shardings
from sdft_jax.core.sampler import SamplingConfig, make_generate
from sdft_jax.core import methods
from sdft_jax.core.step import make_rollout, make_step, phase_step
from sdft_jax.core.train_state import OptimConfig, init_state, make_optimizer, state_shardings
from sdft_jax.core.methods import sequences
from sdft_jax.core.update import StepConfig, jit_train_step, make_train_step
from tests import hf_fixtures as hf
from tests.test_train_step import _copy

SAMPLING = SamplingConfig(max_new_tokens=8, temperature=1.0, stop_ids=(3,), pad_id=0)


def _inputs(B=4, Ps=10, Pt=16, N=8, seed=0):
    sp, sm = hf.left_padded_batch(seed=seed, batch=B, length=Ps)
    tp, tm = hf.left_padded_batch(seed=seed + 1, batch=B, length=Pt)
    r = np.random.RandomState(seed)
    target = r.randint(4, hf.VOCAB, (B, N))
    tmask = (np.arange(N)[None] < r.randint(2, N + 1, (B, 1))).astype(np.int32)
    return {"student_prompt": sp, "student_prompt_mask": sm, "teacher_prompt": tp, "teacher_prompt_mask": tm,
            "target": np.where(tmask == 1, target, 0), "target_mask": tmask}


def _state(model, sc, sgd=False):
    """sgd: updates proportional to the gradient (Adam's first step, ~lr * sign(g), amplifies the
    rounding of near-zero gradients when comparing across device layouts)."""
    tx = optax.sgd(1.0) if sgd else make_optimizer(OptimConfig(lr=1e-2, warmup_steps=0, total_steps=10))
    return tx, init_state(jax.tree.map(jnp.copy, model.params), tx, sc.teacher_kind, seed=0)


def _separate(model, sc, inputs, key, generations=1):
    """Today's three programs: jitted generate, sequences, jitted train step (prompts repeated by hand)."""
    tx, state = _state(model, sc)
    rep = {k: jnp.asarray(np.repeat(v, generations, axis=0)) for k, v in inputs.items()}
    rollout = None
    if sc.method == "sdft":
        rollout = make_generate(model.graphdef, model.config, SAMPLING)(
            state.params, rep["student_prompt"], rep["student_prompt_mask"], key)
        batch = sequences(rep["student_prompt"], rep["student_prompt_mask"], rep["teacher_prompt"],
                           rep["teacher_prompt_mask"], rollout.tokens, rollout.mask, rollout.model_logprobs)
    else:
        batch = sequences(rep["student_prompt"], rep["student_prompt_mask"], None, None, rep["target"],
                           rep["target_mask"])
    state, metrics = jit_train_step(make_train_step(model.graphdef, sc, tx))(state, batch)
    return state, metrics, rollout


def _fused(model, sc, inputs, key, generations=1, sgd=False):
    tx, state = _state(model, sc, sgd)
    step = make_step(model.graphdef, model.config, sc, SAMPLING, tx, num_generations=generations)
    return step(state, {k: jnp.asarray(inputs[k]) for k in methods.get(sc.method).inputs}, key)


@pytest.mark.parametrize("method,micro,generations", [("sdft", 1, 1), ("sdft", 2, 1), ("sdft", 2, 2),
                                                      ("sft", 1, 1), ("sft", 2, 1)])
def test_fused_step_equals_the_separate_programs(tiny_qwen2, method, micro, generations):
    model = load_pretrained(tiny_qwen2, "float32", tokenizer=False)
    sc = StepConfig(method=method, micro_batches=micro, teacher_kind="ema")
    inputs, key = _inputs(), jax.random.key(7)
    a_state, a_metrics, a_roll = _separate(model, sc, inputs, key, generations)
    b_state, b_metrics, b_roll = _fused(model, sc, inputs, key, generations)
    if method == "sdft":
        assert b_roll.tokens.shape[0] == 4 * generations
        np.testing.assert_array_equal(np.asarray(a_roll.tokens), np.asarray(b_roll.tokens))
        np.testing.assert_array_equal(np.asarray(a_roll.mask), np.asarray(b_roll.mask))
    else:
        assert b_roll is None
    for k in ("loss", "grad_norm", "param_norm"):
        np.testing.assert_allclose(float(b_metrics[k]), float(a_metrics[k]), rtol=1e-6)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7),
                 _copy(b_state.params), _copy(a_state.params))
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7),
                 _copy(b_state.teacher_params), _copy(a_state.teacher_params))


def test_phase_step_equals_the_fused_step_and_times_both_phases(tiny_qwen2):
    model = load_pretrained(tiny_qwen2, "float32", tokenizer=False)
    sc = StepConfig()
    inputs, key = {k: jnp.asarray(v) for k, v in _inputs().items() if k in methods.SDFT.inputs}, jax.random.key(1)
    tx, state = _state(model, sc)
    f_state, f_metrics, _ = make_step(model.graphdef, model.config, sc, SAMPLING, tx)(state, inputs, key)
    tx, state = _state(model, sc)
    p_state, p_metrics, _ = phase_step(model.graphdef, model.config, sc, SAMPLING, tx)(state, inputs, key)
    np.testing.assert_allclose(float(p_metrics["loss"]), float(f_metrics["loss"]), rtol=1e-6)
    assert p_metrics["time_generate"] > 0 and p_metrics["time_train_step"] > 0


def _mesh_setup(model, sc, mesh, inputs, sgd=False):
    tx, state = _state(model, sc, sgd)
    st_sh = state_shardings(state, param_shardings(model.config, mesh, model.params), mesh)
    kw = dict(state_shardings=st_sh, input_sharding=shd.batch_sharding(mesh, 1), metrics_sharding=shd.replicated(mesh),
              decode_shardings=param_shardings(model.config, mesh, model.params, shd.DECODE_RULES))
    g = {k: jax.device_put(jnp.asarray(inputs[k]), shd.batch_sharding(mesh, 2)) for k in methods.get(sc.method).inputs}
    return tx, jax.device_put(state, st_sh), st_sh, kw, g


def test_fused_step_on_a_2x2x2_mesh_equals_one_device_and_compiles_once(tiny_qwen2):
    sc = StepConfig(micro_batches=2)
    inputs, key = _inputs(B=8), jax.random.key(5)
    single = load_pretrained(tiny_qwen2, "float32", tokenizer=False)
    s_state, s_metrics, s_roll = _fused(single, sc, inputs, key, sgd=True)

    mesh = shd.make_mesh(2, 2, 2)
    model = load_pretrained(tiny_qwen2, "float32", mesh=mesh, tokenizer=False)
    tx, state, st_sh, kw, g = _mesh_setup(model, sc, mesh, inputs, sgd=True)
    step = make_step(model.graphdef, model.config, sc, SAMPLING, tx, **kw)
    state, metrics, roll = step(state, g, key)
    np.testing.assert_array_equal(np.asarray(roll.tokens), np.asarray(s_roll.tokens))
    np.testing.assert_allclose(float(metrics["loss"]), float(s_metrics["loss"]), rtol=1e-5)
    worst = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()), _copy(state.params),
                                             _copy(s_state.params))))
    assert worst < 1e-5
    assert state.params["layers"]["q"].sharding.spec == st_sh.params["layers"]["q"].spec
    state, _, _ = step(state, g, jax.random.key(6))  # same bucket: no second compile
    assert step._cache_size() == 1


def _loop_collectives(model, sc, mesh, inputs, decode: bool):
    tx, state, st_sh, kw, g = _mesh_setup(model, sc, mesh, inputs)
    if not decode:
        kw["decode_shardings"] = None
    rollout = make_rollout(model.graphdef, model.config, SAMPLING, 1, None, kw["decode_shardings"])
    text = jax.jit(rollout).lower(state, g, jax.random.key(0)).compile().as_text()
    return collectives_in_loops(text)


def test_decode_loop_holds_no_weight_all_gather_on_an_fsdp_mesh(tiny_qwen2):
    """Weights gathered over fsdp once per rollout (DECODE_RULES): 0 all-gathers inside the decode
    loop on a (2, 2, 2) mesh; with the training shardings XLA gathers them per decoded token."""
    mesh = shd.make_mesh(2, 2, 2)
    model = load_pretrained(tiny_qwen2, "float32", mesh=mesh, tokenizer=False)
    inputs = _inputs(B=8)
    with_decode = _loop_collectives(model, StepConfig(), mesh, inputs, decode=True)
    with_train = _loop_collectives(model, StepConfig(), mesh, inputs, decode=False)
    print(f"collectives inside the rollout's loops: decode shardings {dict(with_decode)}, "
          f"training shardings {dict(with_train)}")
    assert with_decode["all-gather"] == 0
    assert with_train["all-gather"] > 0
