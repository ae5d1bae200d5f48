"""Evaluators declared in config.evals: spec checking, what from_config builds, task accuracy."""
import pytest

from sdft_jax import sharding as shd
from sdft_jax.data import Lengths
from sdft_jax.eval.evaluators import EvalContext, TaskAccuracy, check_spec, from_config
from sdft_jax.eval.generation import evaluate
from sdft_jax.model import load_pretrained
from sdft_jax.resolve import ConfigError, resolve
from tests.test_train import _tiny

ROWS = [{"id": f"r{i}", "system": "", "prompt": f"Question {i}?", "demonstration": f"Answer {i} is {i * 7}.",
         "answer": str(i * 7), "raw": ""} for i in range(5)]


@pytest.mark.parametrize("spec,message", [
    (dict(type="perplexity"), "evals.x.type='perplexity'; expected one of"),
    (dict(type="heldout_nll", splt="test"), r"evals.x: unknown argument\(s\) \['splt'\] for type 'heldout_nll'"),
    (dict(type="accuracy", context="oracle"), "evals.x.context='oracle'"),
])
def test_bad_specs_name_the_key(spec, message):
    with pytest.raises(ValueError, match=message):
        check_spec("x", spec)
    c = _tiny()
    c.evals.x = spec
    with pytest.raises(ConfigError, match=message):
        resolve(c, num_devices=8)


def _ctx(model, config, source):
    return EvalContext(config, model, shd.single_device_mesh(), Lengths(256, 512, 32), source)


def test_from_config_declares_what_runs(tiny_qwen2):
    model = load_pretrained(tiny_qwen2, dtype="float32")
    c = _tiny(**{"eval.every": 0})
    assert from_config(c, _ctx(model, c, {"train": ROWS})) == []  # nothing is due ever
    c = _tiny(**{"eval.every": 3, "data.eval_split": ""})
    assert from_config(c, _ctx(model, c, {"train": ROWS})) == []  # demo_nll has no split to read
    c = _tiny(**{"eval.every": 3})
    c.evals.teacher_nll = dict(type="heldout_nll", context="teacher", every=5)
    evs = from_config(c, _ctx(model, c, {"train": ROWS}))
    assert [(e.name, e.every, e.context) for e in evs] == [("demo_nll", 3, "student"), ("teacher_nll", 5, "teacher")]


def test_teacher_context_accuracy_reads_the_teacher_weights(tiny_qwen2, tmp_path):
    import json

    import jax
    model = load_pretrained(tiny_qwen2, dtype="float32")
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"prompt": r["prompt"], "demonstration": r["demonstration"],
                                        "answer": r["answer"]}) + "\n" for r in ROWS))
    c = _tiny(**{"sampling.max_new_tokens": 4})
    ctx = EvalContext(c, model, data_dir=str(tmp_path / "tfds"))
    ev = TaskAccuracy("t", ctx, task="demonstrations", path=str(path), split="train", context="teacher")
    assert ev.rows and {r["prompt"] for r in ev.rows} <= {r["prompt"] for r in ROWS}  # the train part of the split
    teacher = jax.tree.map(lambda x: x * 0.5, model.params)
    want = evaluate(model, ev.rows, "exact_match", params=teacher, **ev.kwargs)["accuracy"]
    assert ev.kwargs["with_demonstration"] and ev(model.params, teacher) == {"t": want}
