"""The jitted SDFT / SFT step: gradient isolation, EMA, sharding, accumulation, SFT vs HF loss."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from sdft_jax.core import losses
from sdft_jax import sharding as shd
from sdft_jax.model import load_pretrained
from sdft_jax.core.train_state import OptimConfig, init_state, make_optimizer, state_shardings
from sdft_jax.core.methods import sequences
from sdft_jax.core.update import StepConfig, jit_train_step, make_train_step
from tests import hf_fixtures as hf


def _batch(seed=0, B=4, Ps=8, Pt=14, N=10):
    r = np.random.RandomState(seed)

    def prompts(P):
        toks = r.randint(0, hf.VOCAB, (B, P))
        mask = np.ones((B, P), np.int32)
        for i in range(B):
            mask[i, : r.randint(0, P // 2)] = 0
        return jnp.asarray(np.where(mask, toks, 0)), jnp.asarray(mask)

    sp, sm = prompts(Ps)
    tp, tm = prompts(Pt)
    cmask = np.ones((B, N), np.int32)
    for i in range(B):
        cmask[i, r.randint(4, N + 1):] = 0
    comp = np.where(cmask, r.randint(0, hf.VOCAB, (B, N)), 0)
    return sequences(sp, sm, tp, tm, jnp.asarray(comp), jnp.asarray(cmask),
                      jnp.asarray(-r.rand(B, N), jnp.float32))


def _setup(path, sc, lr=1e-3, mesh=None, warmup=0, sgd=False):
    """sgd=True: the update is proportional to the gradient, so comparing params compares grads
    (Adam's first step is ~lr*sign(g) and amplifies rounding in near-zero gradients)."""
    model = load_pretrained(path, dtype="float32", mesh=mesh)
    tx = optax.sgd(lr) if sgd else make_optimizer(OptimConfig(lr=lr, warmup_steps=warmup, total_steps=100))
    state = init_state(model.params, tx, sc.teacher_kind, seed=0)
    return model, tx, state


def _copy(tree):
    return jax.tree.map(lambda x: np.array(x), tree)


def test_ema_teacher_update_is_exact_and_frozen_teacher_is_untouched(tiny_qwen2):
    batch = _batch()
    for teacher in ("ema", "frozen"):
        sc = StepConfig(teacher_kind=teacher, ema_alpha=0.25)
        model, tx, state = _setup(tiny_qwen2, sc, warmup=1)
        initial = _copy(state.teacher_params)
        step = jit_train_step(make_train_step(model.graphdef, sc, tx))
        state, _ = step(state, batch)  # lr is 0 at step 0 (linear warmup from 0, as in HF)
        before = _copy(state.teacher_params)
        state, metrics = step(state, batch)
        params, teacher_params = _copy(state.params), _copy(state.teacher_params)
        if teacher == "frozen":
            jax.tree.map(np.testing.assert_array_equal, teacher_params, initial)
        else:
            expected = jax.tree.map(lambda p, t: 0.25 * p + 0.75 * t, params, before)
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                         teacher_params, expected)
        assert float(metrics["teacher_student_distance"]) > 0
        assert np.isfinite(float(metrics["loss"]))


def test_float32_teacher_of_a_bfloat16_model_keeps_the_exact_ema(tiny_qwen2):
    """teacher.ema_dtype=float32: the stored teacher is the fp32 EMA of the bf16 student, exactly;
    the bf16 teacher under the same updates rounds almost every EMA increment away."""
    sc = StepConfig(teacher_kind="ema", ema_alpha=0.01)
    model = load_pretrained(tiny_qwen2, dtype="bfloat16")
    tx = make_optimizer(OptimConfig(lr=1e-3, warmup_steps=0, total_steps=100))
    step = jit_train_step(make_train_step(model.graphdef, sc, tx))
    batch = _batch()
    changed = {}
    for teacher_dtype in (None, "float32"):
        state = init_state(jax.tree.map(jnp.copy, model.params), tx, "ema", seed=0, teacher_dtype=teacher_dtype)
        initial = _copy(state.teacher_params)
        for _ in range(3):
            before = _copy(state.teacher_params)
            state, metrics = step(state, batch)
        params, teacher = _copy(state.params), _copy(state.teacher_params)
        leaves = jax.tree.leaves(teacher)
        assert {x.dtype for x in leaves} == {np.dtype(teacher_dtype or jnp.bfloat16)}
        assert {x.dtype for x in jax.tree.leaves(params)} == {np.dtype(jnp.bfloat16)}
        if teacher_dtype:
            # XLA may feed the EMA the student's update before its bf16 rounding (excess precision
            # is allowed), so the exact EMA of the stored params is met within alpha * half a bf16 ulp.
            for p, t0, t in zip(jax.tree.leaves(params), jax.tree.leaves(before), leaves):
                p = p.astype(np.float32)
                err = np.abs(t - (0.01 * p + 0.99 * t0))
                assert np.all(err <= 0.01 * np.abs(p) * 2.0 ** -8 + 1e-6 * np.abs(t) + 1e-12), err.max()
        moved = sum(int(np.sum(a != b)) for a, b in zip(leaves, jax.tree.leaves(initial)))
        changed[teacher_dtype] = moved / sum(x.size for x in leaves)
        assert np.isfinite(float(metrics["loss"]))
    assert changed["float32"] > 0.5  # measured 0.88 (the rest: embeddings of tokens not in the batch)
    assert changed[None] < 0.1  # measured 0.03, at lr 1e-3


def test_live_teacher_differentiates_only_through_the_student(tiny_qwen3):
    """Gradient of the step == gradient of the student loss with teacher logits fed as constants."""
    sc = StepConfig(teacher_kind="live", skip_first_tokens=2)
    model, tx, state = _setup(tiny_qwen3, sc, lr=1.0, sgd=True)  # sgd at lr 1: the update is -grad
    batch = _batch(seed=1)
    n = batch["completion_mask"].shape[1]
    before = _copy(state.params)
    after, _ = jit_train_step(make_train_step(model.graphdef, sc, tx))(state, batch)
    grads = jax.tree.map(lambda a, b: a - np.asarray(b), before, after.params)
    params = jax.tree.map(jnp.asarray, before)

    teacher_logits = model.apply(params, batch["teacher_tokens"], batch["teacher_mask"])[:, -n - 1:-1]

    def reference(p):
        s_logits = model.apply(p, batch["student_tokens"], batch["student_mask"])[:, -n - 1:-1]
        d = losses.per_token_divergence(s_logits, jax.lax.stop_gradient(teacher_logits))
        return losses.aggregate(d, losses.loss_mask(batch["completion_mask"], 2))
    want = jax.grad(reference)(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6), grads, want)


def test_grad_accumulation_equals_full_batch(tiny_qwen2):
    batch = _batch(seed=2, B=8)
    outs = []
    for micro in (1, 4):
        for agg in ("sequence_mean", "token_mean"):
            sc = StepConfig(micro_batches=micro, aggregation=agg)
            model, tx, state = _setup(tiny_qwen2, sc, lr=10.0, sgd=True)
            state, metrics = jit_train_step(make_train_step(model.graphdef, sc, tx))(state, batch)
            outs.append((micro, agg, float(metrics["loss"]), _copy(state.params)))
    by = {(m, a): (l, p) for m, a, l, p in outs}
    for agg in ("sequence_mean", "token_mean"):
        (l1, p1), (l4, p4) = by[(1, agg)], by[(4, agg)]
        np.testing.assert_allclose(l4, l1, rtol=1e-5)
        # SGD lr 10: the params moved by ~1e-2; summation order differs across micro-batches.
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), p4, p1)


def test_sharded_step_equals_single_device(tiny_qwen2):
    batch = _batch(seed=3, B=8)
    sc = StepConfig(importance_correction=True)
    model, tx, state = _setup(tiny_qwen2, sc, lr=10.0, sgd=True)
    single_state, single_metrics = jit_train_step(make_train_step(model.graphdef, sc, tx))(state, batch)

    mesh = shd.make_mesh(2, 2, 2)
    from sdft_jax.model import param_shardings
    smodel, tx, sstate = _setup(tiny_qwen2, sc, mesh=mesh, lr=10.0, sgd=True)
    p_sh = param_shardings(smodel.config, mesh, smodel.params)
    st_sh = state_shardings(sstate, p_sh, mesh)
    sstate = jax.device_put(sstate, st_sh)
    b_sh = {k: shd.batch_sharding(mesh, v.ndim) for k, v in batch.items()}
    step = jit_train_step(make_train_step(smodel.graphdef, sc, tx), st_sh, b_sh, shd.replicated(mesh))
    out_state, metrics = step(sstate, jax.device_put(batch, b_sh))
    assert out_state.params["layers"]["q"].sharding.spec == p_sh["layers"]["q"].spec
    np.testing.assert_allclose(float(metrics["loss"]), float(single_metrics["loss"]), rtol=1e-5)
    diffs = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
                         out_state.params, single_state.params)
    worst = max(jax.tree.leaves(diffs))
    print(f"sharded vs single-device step: loss {float(metrics['loss']):.6f} vs "
          f"{float(single_metrics['loss']):.6f}; max |param diff| {worst:.2e}")
    assert worst < 1e-5


def test_sft_loss_equals_transformers_causal_lm_loss(tiny_llama):
    batch = _batch(seed=4, B=3)
    sc = StepConfig(method="sft", aggregation="token_mean")
    model, tx, state = _setup(tiny_llama, sc)
    _, metrics = jit_train_step(make_train_step(model.graphdef, sc, tx))(state, batch)
    tokens, mask = np.asarray(batch["student_tokens"]), np.asarray(batch["student_mask"])
    n = batch["completion_mask"].shape[1]
    labels = np.full_like(tokens, -100)
    labels[:, -n:] = np.where(np.asarray(batch["completion_mask"]) == 1, tokens[:, -n:], -100)
    ref = hf.reload_hf(tiny_llama)
    with torch.no_grad():
        out = ref(torch.tensor(tokens, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long),
                  position_ids=torch.tensor(np.maximum(mask.cumsum(-1) - 1, 0), dtype=torch.long), labels=torch.tensor(labels, dtype=torch.long))
    print(f"SFT loss ours {float(metrics['loss']):.6f} vs transformers {out.loss.item():.6f}")
    np.testing.assert_allclose(float(metrics["loss"]), out.loss.item(), rtol=1e-5)


def test_no_recompilation_after_first_step(tiny_qwen2):
    """With explicit in/out shardings (as the training program uses) the step compiles once."""
    from sdft_jax.model import param_shardings
    sc = StepConfig()
    model, tx, state = _setup(tiny_qwen2, sc)
    mesh = model.mesh
    st_sh = state_shardings(state, param_shardings(model.config, mesh, model.params), mesh)
    b_sh = {k: shd.batch_sharding(mesh, v.ndim) for k, v in _batch().items()}
    step = jit_train_step(make_train_step(model.graphdef, sc, tx), st_sh, b_sh, shd.replicated(mesh))
    state = jax.device_put(state, st_sh)
    for seed in range(3):
        state, _ = step(state, _batch(seed=seed))
    assert step._cache_size() == 1


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
def test_sdft_steps_reduce_the_divergence(tiny_qwen2, kind):
    sc = StepConfig(loss_kind=kind, teacher_kind="frozen", skip_first_tokens=0)
    model, tx, state = _setup(tiny_qwen2, sc, lr=3e-3)
    step = jit_train_step(make_train_step(model.graphdef, sc, tx))
    batch = _batch(seed=5)
    history = []
    for _ in range(8):
        state, metrics = step(state, batch)
        history.append(float(metrics["loss"]))
    print(kind, [round(h, 4) for h in history])
    assert history[-1] < 0.5 * history[0]


def test_learning_rate_schedule_warmup_then_cosine():
    from sdft_jax.core.train_state import learning_rate_schedule
    sched = learning_rate_schedule(OptimConfig(lr=1.0, warmup_steps=10, total_steps=110))
    np.testing.assert_allclose([float(sched(s)) for s in (0, 5, 10, 60, 110)], [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-6)
