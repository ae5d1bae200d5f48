"""Teachers and baselines: the external teacher (torch parity, resume, tokenizer check), the teacher
anchored to the base across continual stages, offline self-distillation and rejection sampling."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from sdft_jax.core import methods
from sdft_jax.core.methods import sequences
from sdft_jax.core.sampler import SamplingConfig, make_generate
from sdft_jax.core.step import phase_step
from sdft_jax.core.train_state import OptimConfig, init_state, make_optimizer
from sdft_jax.core.update import StepConfig, make_train_step
from sdft_jax.data.buckets import buckets_up_to, pad_to_bucket
from sdft_jax.data.prompts import student_context, teacher_context
from sdft_jax.eval import scorers
from sdft_jax.model import load_pretrained
from sdft_jax.model.byte_tokenizer import byte_tokenizer
from sdft_jax.programs.continual import run_continual
from sdft_jax.programs.train import run
from sdft_jax.resolve import ConfigError
from sdft_jax.runtime.checkpoint import Checkpointer
from tests import hf_fixtures as hf
from tests import run_configs

def _config(name: str, arg=None, **overrides):
    return run_configs.load(name, arg, **overrides)


def _metrics(workdir):
    return [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]


def _batch(seed=0, B=4, Ps=8, Pt=14, N=10):
    r = np.random.RandomState(seed)

    def prompts(P):
        mask = np.ones((B, P), np.int32)
        for i in range(B):
            mask[i, : r.randint(0, P // 2)] = 0
        return np.where(mask, r.randint(0, hf.VOCAB, (B, P)), 0), mask

    (sp, sm), (tp, tm) = prompts(Ps), prompts(Pt)
    cmask = np.ones((B, N), np.int32)
    for i in range(B):
        cmask[i, r.randint(5, N + 1):] = 0
    comp = np.where(cmask, r.randint(0, hf.VOCAB, (B, N)), 0)
    return sp, sm, tp, tm, comp, cmask


def _torch_logits(model, tokens, mask):
    return model(torch.tensor(tokens, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long),
                 position_ids=torch.tensor(np.maximum(mask.cumsum(-1) - 1, 0), dtype=torch.long)).logits


# ----------------------------------------------------------------------------- external teacher
def test_external_teacher_step_equals_torch(tmp_path):
    """A wider, deeper teacher (another architecture's shapes, the same tokenizer) scores the student's
    completion: one step's loss and gradient equal a torch computation of forward KL, skipping the first
    3 completion tokens, mean over sequences."""
    student_dir = hf.build("qwen2", tmp_path / "student", seed=0)
    teacher_dir = hf.build("qwen2", tmp_path / "teacher", seed=1, hidden_size=96, num_hidden_layers=3,
                           intermediate_size=160, num_attention_heads=6, num_key_value_heads=2)
    sp, sm, tp, tm, comp, cmask = _batch()
    N, skip, lr = comp.shape[1], 3, 1.0
    student, teacher = load_pretrained(student_dir, dtype="float32"), load_pretrained(teacher_dir, dtype="float32")
    sc = StepConfig(teacher_kind="external", skip_first_tokens=skip)
    state = init_state(student.params, optax.sgd(lr), "external", seed=0, external_teacher=teacher.params)
    before = np.array(student.params["lm_head"])
    step = jax.jit(make_train_step(student.graphdef, sc, optax.sgd(lr), teacher_graphdef=teacher.graphdef))
    state, metrics = step(state, sequences(*map(jnp.asarray, (sp, sm, tp, tm, comp, cmask))))

    s_ref, t_ref = hf.hf_model("qwen2", 0), hf.hf_model("qwen2", 1, hidden_size=96, num_hidden_layers=3,
                                                      intermediate_size=160, num_attention_heads=6,
                                                      num_key_value_heads=2)
    s_tok, t_tok = np.concatenate([sp, comp], 1), np.concatenate([tp, comp], 1)
    s_logits = _torch_logits(s_ref, s_tok, np.concatenate([sm, cmask], 1))[:, -N - 1:-1]
    with torch.no_grad():
        t_logits = _torch_logits(t_ref, t_tok, np.concatenate([tm, cmask], 1))[:, -N - 1:-1]
    lp_s, lp_t = torch.log_softmax(s_logits.double(), -1), torch.log_softmax(t_logits.double(), -1)
    kl = (lp_t.exp() * (lp_t - lp_s)).sum(-1)
    lmask = torch.tensor(cmask, dtype=torch.float64)
    lmask[:, :skip] = 0
    loss = ((kl * lmask).sum(-1) / lmask.sum(-1).clamp(min=1)).mean()
    loss.backward()
    np.testing.assert_allclose(float(metrics["loss"]), float(loss.detach()), rtol=1e-5)
    grad_jax = (before - np.array(state.params["lm_head"])) / lr  # sgd: the step is lr * grad
    np.testing.assert_allclose(grad_jax, s_ref.lm_head.weight.grad.numpy().T, atol=2e-6, rtol=1e-4)
    assert state.teacher_params is None and state.external_teacher is not None


def test_external_teacher_run_with_a_lora_student_resumes_exactly(tmp_path):
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    lora = {"model.lora.rank": 4}
    run(_config("tiny", "teacher=external", **lora), straight)
    run(_config("tiny", "teacher=external", steps=3, **lora), split)
    run(_config("tiny", "teacher=external", **lora), split)  # re-reads the teacher, restores the adapters
    assert [r["loss"] for r in _metrics(straight)] == [r["loss"] for r in _metrics(split)]
    leaves = json.load(open(os.path.join(split, "checkpoints", "6", "state", "_METADATA")))["tree_metadata"]
    assert not any("external" in k or "teacher" in k for k in leaves)  # never checkpointed


def test_external_teacher_with_another_tokenizer_is_one_line(tmp_path):
    path = hf.build("qwen2", tmp_path / "teacher", seed=1)
    tok = byte_tokenizer()
    tok.add_tokens(["<extra_token>"])
    tok.save_pretrained(path)
    c = _config("tiny", None, **{"teacher.kind": "external", "teacher.path": path})
    with pytest.raises(ConfigError, match=r"^teacher\.path='.*teacher': its tokenizer differs from model\.path="
                                          r"'.*model''s \(259 vs 260 tokens\)"):
        run(c, str(tmp_path / "run"))


def test_external_teacher_is_in_the_compiled_steps_arguments(tmp_path):
    """The memory check reads the compiled step's argument bytes: the external teacher's params are in them."""
    student_dir = hf.build("qwen2", tmp_path / "student", seed=0)
    teacher_dir = hf.build("qwen2", tmp_path / "teacher", seed=1, hidden_size=96, num_hidden_layers=3)
    student, teacher = load_pretrained(student_dir, dtype="float32"), load_pretrained(teacher_dir, dtype="float32")
    batch = sequences(*map(jnp.asarray, _batch()))
    tx = optax.sgd(1.0)

    def argument_bytes(kind, external):
        sc = StepConfig(teacher_kind=kind)
        state = init_state(student.params, tx, kind, seed=0, external_teacher=external)
        step = make_train_step(student.graphdef, sc, tx, teacher_graphdef=teacher.graphdef if external else None)
        return jax.jit(step).lower(state, batch).compile().memory_analysis().argument_size_in_bytes
    teacher_bytes = sum(x.nbytes for x in jax.tree.leaves(teacher.params))
    assert argument_bytes("external", teacher.params) - argument_bytes("live", None) == teacher_bytes


# ----------------------------------------------------------------------------- base-anchored teacher
def test_base_anchor_keeps_the_original_model_as_every_stages_teacher(tmp_path):
    """teacher.anchor=base, frozen: stage 2's teacher is the base, not stage 1's export (which moved)."""
    c = _config("continual", "model=tiny", **{"teacher.kind": "frozen", "teacher.anchor": "base"})
    res = run_continual(c, str(tmp_path))
    assert res["teacher_anchor"] == "base"
    stage1 = load_pretrained(os.path.join(str(tmp_path), "stage0_demonstrations", "export"), dtype="float32")
    template = init_state(stage1.params, make_optimizer(OptimConfig()), "frozen", seed=0)  # the run's state's shape
    ckpt = Checkpointer(os.path.join(str(tmp_path), "stage1_demonstrations", "checkpoints"), keep=1)
    restored, _ = ckpt.restore(template, jax.tree.map(lambda x: x.sharding, template))
    ckpt.close()
    base = jax.tree.leaves(load_pretrained(c.model.path, dtype="float32").params)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(restored.teacher_params), base))
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(stage1.params), base))  # stage 1 trained


# ----------------------------------------------------------------------------- offline
def test_offline_trains_the_student_context_on_the_teachers_stored_completions(tmp_path):
    workdir = str(tmp_path / "offline")
    c = _config("tiny", "method=offline", steps=1, **{"batch.prompts_per_step": 64, "checkpoint.every": 1})
    run(c, workdir)
    lines = open(os.path.join(workdir, "offline_targets.jsonl")).read().splitlines()
    rows = [json.loads(line) for line in lines[1:]]
    assert len(rows) == 64 and json.load(open(os.path.join(workdir, "data_stats.json")))["offline"]["completions"] == 64
    # The completions are what the sampler gives from the teacher context at the run's seed (one batch
    # of batch.prompts_per_step = 64 prompts: key fold_in(fold_in(seed, batch 0), generation 0)).
    model = load_pretrained(c.model.path, dtype="float32")
    tok = model.tokenizer
    examples = [json.loads(line) for line in open(c.data.path)]
    line = [int(r["id"].rsplit("/", 1)[1]) - 1 for r in rows]  # demonstrations ids end in the file's line
    teacher_ids = [tok(teacher_context(tok, {"prompt": examples[i]["prompt"],
                                             "demonstration": examples[i]["demonstration"]}, c.data.teacher_template),
                       add_special_tokens=False).input_ids for i in line]
    sampling = SamplingConfig(max_new_tokens=c.sampling.max_new_tokens, temperature=1.0, stop_ids=(256, 258),
                              pad_id=tok.pad_token_id)
    tokens, mask = pad_to_bucket(teacher_ids, buckets_up_to(c.data.max_teacher_prompt, growth=c.data.bucket_growth),
                                 tok.pad_token_id, min_batch=64)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(c.seed), 0), 0)
    r = make_generate(model.graphdef, model.config, sampling)(model.params, jnp.asarray(tokens), jnp.asarray(mask), key)
    assert [row["completions"][0] for row in rows] == [
        [int(t) for t in np.asarray(r.tokens)[i, : int(r.lengths[i])]] for i in range(64)]
    # Step 1's loss (before any update) is the NLL of those completions under the STUDENT context:
    # transformers on the same checkpoint, mean over the 64 rows of each row's mean token NLL.
    ref = hf.reload_hf(c.model.path)
    nll = []
    for i, row in zip(line, rows):
        prompt = tok(student_context(tok, {"prompt": examples[i]["prompt"]}), add_special_tokens=False).input_ids
        target = row["completions"][0]
        ids = torch.tensor([prompt + target])
        with torch.no_grad():
            lp = torch.log_softmax(ref(ids).logits[0, len(prompt) - 1:-1].double(), -1)
        nll.append(float(-lp[torch.arange(len(target)), torch.tensor(target)].mean()))
    np.testing.assert_allclose(_metrics(workdir)[0]["loss"], np.mean(nll), rtol=2e-5)


# ----------------------------------------------------------------------------- rejection
def test_rejection_update_is_sft_on_the_accepted_rows_alone(tiny_qwen2):
    """The judged step (rollout, host verdict, update) equals an SFT step on the accepted rows only;
    a step that accepts nothing changes neither the weights nor the optimizer's momentum (which would
    otherwise move the weights again)."""
    model = load_pretrained(tiny_qwen2, dtype="float32")
    sp, sm, _, _, _, _ = _batch(seed=3)
    inputs = {"student_prompt": jnp.asarray(sp), "student_prompt_mask": jnp.asarray(sm),
              "index": jnp.arange(sp.shape[0], dtype=jnp.int32)}
    accepted = np.array([1, 0, 1, 0], np.int32)  # a known verdict: rows 0 and 2
    verdicts = iter([accepted, np.zeros(4, np.int32)])
    sc, tx = StepConfig(method="rejection"), optax.sgd(1.0, momentum=0.9)
    sampling = SamplingConfig(max_new_tokens=8, stop_ids=(), pad_id=0)
    step = phase_step(model.graphdef, model.config, sc, sampling, tx, judge=lambda inputs, rolled: next(verdicts))
    state, metrics, rolled = step(init_state(jax.tree.map(jnp.copy, model.params), tx, "ema", 0), inputs,
                                  jax.random.key(0))
    assert metrics["accepted_fraction"] == 0.5
    keep = accepted.astype(bool)
    ref_batch = sequences(jnp.asarray(sp[keep]), jnp.asarray(sm[keep]), None, None,
                          jnp.asarray(np.asarray(rolled.tokens)[keep]), jnp.asarray(np.asarray(rolled.mask)[keep]))
    ref_state, ref_metrics = jax.jit(make_train_step(model.graphdef, StepConfig(method="sft"), tx))(
        init_state(jax.tree.map(jnp.copy, model.params), tx, "ema", 0), ref_batch)
    np.testing.assert_allclose(float(metrics["loss"]), float(ref_metrics["loss"]), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    before = jax.tree.map(np.asarray, (state.params, state.opt_state))
    state, metrics, _ = step(state, inputs, jax.random.key(1))
    assert metrics["accepted_fraction"] == 0.0 and float(metrics["update_norm"]) == 0.0
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves((state.params, state.opt_state))):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_rejection_run_logs_acceptance_and_needs_a_scorer(tmp_path, monkeypatch, capsys):
    # A toy scorer that accepts about half of a random model's completions: an even number of letters.
    monkeypatch.setitem(scorers.SCORERS, "even_length", lambda completion, example: float(len(completion) % 2 == 0))
    workdir = str(tmp_path / "rejection")
    run(_config("tiny", "method=rejection", steps=3, **{"data.scorer": "even_length"}), workdir)
    fractions = [r["accepted_fraction"] for r in _metrics(workdir)]
    assert len(fractions) == 3 and all(0.0 < f < 1.0 for f in fractions)
    # A student that solves nothing trains on nothing: the run goes on (said once), it does not stop.
    monkeypatch.setitem(scorers.SCORERS, "never", lambda completion, example: 0.0)
    out = run(_config("tiny", "method=rejection", **{"data.scorer": "never"}), str(tmp_path / "never"))
    assert out["step"] == 6 and out["accepted_fraction"] == 0.0
    assert capsys.readouterr().out.count("accepted none of the sampled completions; the updates are empty") == 1
    with pytest.raises(ConfigError, match=r"^data\.scorer: method=rejection accepts the completions a scorer gives "
                                          r"full marks; 'nope' is not one"):
        run(_config("tiny", "method=rejection", **{"data.scorer": "nope"}), str(tmp_path / "bad"))


def test_every_method_is_a_record_the_step_asks():
    assert set(methods.METHODS) == {"sdft", "sft", "offline", "rejection"}
    assert methods.REJECTION.judged and methods.REJECTION.samples and not methods.REJECTION.distills
    assert methods.OFFLINE.targets_from_teacher and methods.OFFLINE.inputs == methods.SFT.inputs
    with pytest.raises(ValueError, match="method='dpo'; expected one of sdft, sft, offline, rejection"):
        StepConfig(method="dpo")
