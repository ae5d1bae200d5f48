"""configs/knowledge.py end to end on the tiny model: corpus -> base eval -> per method a sweep,
a choice on validation and the test evaluations -> results.json / results.md / results.png."""
import importlib.util
import json
import os

from sdft_jax.programs.registry import run_program
from tests.test_train import REPO


def _knowledge_config(arg):
    spec = importlib.util.spec_from_file_location("knowledge_cfg", os.path.join(REPO, "configs", "knowledge.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, mod.get_config(arg)


def test_knowledge_experiment_compares_both_methods_on_the_tiny_model(tmp_path, monkeypatch):
    monkeypatch.setenv("SDFT_JAX_CACHE", str(tmp_path / "cache"))
    _, c = _knowledge_config("model=tiny,companies=8,epochs=1")  # 1 epoch = 4 steps of 8 prompts
    assert c.compare.sweep == ["optim.lr=[2e-05,6e-05,0.0002]", "steps=[4]"]
    c.compare.sweep = ["optim.lr=[1e-3,1e-2]", "steps=[2]"]  # two points per method, 2 steps each
    assert c.compare.keep == "chosen"
    freed = []
    monkeypatch.setattr("sdft_jax.programs.compare.say", lambda m: freed.append(m) if "freed" in m else None)
    out = run_program(c, str(tmp_path / "run"))
    results = json.load(open(tmp_path / "run" / "results.json"))
    assert out["columns"] == results["columns"] == [
        "heldout", "heldout/knowledge_lenient", "ood", "ood/knowledge_lenient", "oracle_rag",
        "oracle_rag/knowledge_lenient", "drift", "humaneval"]
    for method in ("sdft", "sft"):
        m = results["methods"][method]
        assert [r["point"] for r in m["sweep"]] == [{"optim.lr": 1e-3, "steps": 2}, {"optim.lr": 1e-2, "steps": 2}]
        assert all(set(r["validation"]) == {"val", "val/knowledge_lenient"} for r in m["sweep"])
        chosen = os.path.join(tmp_path, "run", method, ",".join(f"{k}={v}" for k, v in m["chosen"].items()))
        assert os.path.isdir(os.path.join(chosen, "export"))
        score = lambda r: (r["validation"]["val"], r["validation"]["val/knowledge_lenient"])  # noqa: E731
        best = max(score(r) for r in m["sweep"])
        for r in m["sweep"]:  # keep="chosen": no checkpoints left; an export only where the point can still be chosen
            folder = os.path.join(tmp_path, "run", method, ",".join(f"{k}={v}" for k, v in r["point"].items()))
            assert not os.path.exists(os.path.join(folder, "checkpoints"))
            assert os.path.isdir(os.path.join(folder, "export")) == (score(r) == best)
        logged = [json.loads(line) for line in open(os.path.join(chosen, "metrics.jsonl"))]
        assert [r["step"] for r in logged if "eval/val" in r] == [2]  # every=-1: once, at the last step
        assert m["test"]["drift"] != results["base"]["drift"]  # trained weights were evaluated
        for name in ("heldout", "ood", "humaneval"):  # per-question records, for paired tests (the tiny
            # tokenizer makes every oracle context and one of 6 ood prompts too long; stderr says so)
            for records, row in ((os.path.join(chosen, "per_question"), m["test"]),
                                 (os.path.join(tmp_path, "run", "base_per_question"), results["base"])):
                scores = [json.loads(line)["score"] for line in open(os.path.join(records, f"{name}.jsonl"))]
                assert len(scores) == {"heldout": 8, "ood": 5, "humaneval": 2}[name]
                assert sum(scores) / len(scores) == row[name]
    assert len([m for m in freed if "/sdft" in m]) == 2  # before the second point, and after the sweep
    assert results["ceiling"] == {"heldout": results["base"]["oracle_rag"],
                                  "heldout/knowledge_lenient": results["base"]["oracle_rag/knowledge_lenient"]}
    table = (tmp_path / "run" / "results.md").read_text()
    assert "| base |" in table and "| SDFT (optim.lr=" in table and "| base, oracle context (the `ceiling` columns) |" in table
    assert os.path.getsize(tmp_path / "run" / "results.png") > 10_000
    from sdft_jax.runtime.doc_block import BEGIN, END
    from sdft_jax.experiments.knowledge import report
    doc = tmp_path / "EXPERIMENTS.md"
    doc.write_text(f"hypothesis\n{BEGIN}\nold\n{END}\n")
    assert report.main([str(tmp_path / "run"), "--update", str(doc), "--figure", str(tmp_path / "k.png")]) == 0
    text = doc.read_text()
    assert text.startswith("hypothesis\n") and "old" not in text and "![knowledge results](k.png)" in text
    sft = results["methods"]["sft"]["test"]
    assert (f"| SFT | 80 | 95 | 80 | {100 * sft['heldout']:.1f} | {100 * sft['heldout/knowledge_lenient']:.1f} | "
            f"{100 * sft['ood']:.1f} |") in text
    from sdft_jax.experiments.knowledge import round2  # the second round's collector: question counts and recipes
    collected = round2.collect(str(tmp_path / "run"), "model=tiny,companies=8,epochs=1")
    assert collected["examples"] == {"val": 2, "heldout": 8, "ood": 6, "oracle_rag": 8, "humaneval": 2}
    assert collected["methods"]["sft"]["recipe"] == {
        "loss.skip_first_tokens": c.loss.skip_first_tokens, "model.lora.rank": 0, "batch.prompts_per_step": 8,
        "sampling.max_new_tokens": 16, **results["methods"]["sft"]["chosen"]}
    messages = []  # a rerun redoes nothing
    monkeypatch.setattr("sdft_jax.programs.compare.say", messages.append)
    assert run_program(c, str(tmp_path / "run"))["methods"] == results["methods"]
    assert not any("test evaluations" in m and "chose" not in m for m in messages)


def test_an_incomplete_cached_corpus_is_rebuilt(tmp_path, monkeypatch):
    """A corpus cached by an older generator (a file missing) is written anew, not reused."""
    monkeypatch.setenv("SDFT_JAX_CACHE", str(tmp_path))
    mod, _ = _knowledge_config("model=tiny")
    root = mod.corpus_folder(0, 5)
    os.remove(os.path.join(root, "oracle", "test.jsonl"))
    assert mod.corpus_folder(0, 5) == root and os.path.isfile(os.path.join(root, "oracle", "test.jsonl"))


def test_command_line_names_a_bad_compare_setting_before_anything_runs(tmp_path):
    """`python -m sdft_jax.main` runs the compare program (its flags and the sweep's do not clash)."""
    import subprocess
    import sys
    from tests.test_train import _env
    env = {**_env(), "SDFT_JAX_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "sdft_jax.main", "--config=configs/knowledge.py:model=tiny,companies=4",
           f"--workdir={tmp_path / 'run'}", "--config.compare.select=test"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 1, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == "error: compare.select='test': not an evaluator of config.evals (['val'])"
    assert not os.path.exists(tmp_path / "run" / "base.json")


def test_qwen_defaults_are_the_second_rounds_design_and_arguments_still_override(tmp_path, monkeypatch):
    """`configs/knowledge.py:model=qwen2_5_0_5b` alone is the config step 3 ran with its arguments spelled out."""
    monkeypatch.setenv("SDFT_JAX_CACHE", str(tmp_path))
    mod, short = _knowledge_config("model=qwen2_5_0_5b")
    long = mod.get_config("model=qwen2_5_0_5b,method=sdft/sft/offline,companies=10,lora=16,humaneval=20,"
                          "lrs=1e-4/5e-4,epoch_grid=4,val_examples=30")
    assert short.to_json() == long.to_json()
    assert short.compare.sweep == ["optim.lr=[0.0001,0.0005]", "steps=[20]"] and short.model.lora.rank == 16
    full = mod.get_config("model=qwen2_5_0_5b,companies=30,lora=0,method=both,lrs=,epoch_grid=")
    assert full.compare.methods == ["sdft", "sft"] and full.model.lora.rank == 0
    assert full.compare.sweep == ["optim.lr=[2e-05,6e-05,0.0002]", "steps=[30,60]"]
    assert mod.get_config("model=smollm2_135m").compare.methods == ["sdft", "sft"]  # no defaults of its own
