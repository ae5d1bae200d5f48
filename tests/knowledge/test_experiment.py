"""configs/knowledge.py end to end on the tiny model: corpus -> base eval -> 2 training steps -> eval."""
import importlib.util
import json
import os

from sdft_jax.programs import run_program
from tests.test_train import REPO


def test_knowledge_config_runs_base_eval_training_and_eval(tmp_path, monkeypatch):
    monkeypatch.setenv("SDFT_JAX_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("knowledge_cfg", os.path.join(REPO, "configs", "knowledge.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config("model=tiny,method=sft,companies=8")
    assert c.stages[0].steps == 2 and os.path.isfile(os.path.join(c.stages[0].path, "train.jsonl"))
    out = run_program(c, str(tmp_path / "run"))
    results = json.load(open(tmp_path / "run" / "results.json"))
    assert out["columns"] == results["columns"] == [
        "heldout", "prior:ood", "prior:oracle_rag", "prior:drift", "prior:humaneval", "heldout/knowledge_lenient",
        "prior:ood/knowledge_lenient", "prior:oracle_rag/knowledge_lenient"]
    assert len(results["matrix"]) == 1 and len(results["base_row"]) == 8
    drift = results["columns"].index("prior:drift")
    assert results["base_row"][drift] > 0 and results["matrix"][0][drift] != results["base_row"][drift]
    assert os.path.isdir(tmp_path / "run" / "stage0_knowledge" / "export")


def test_an_incomplete_cached_corpus_is_rebuilt(tmp_path, monkeypatch):
    """A corpus cached by an older generator (a file missing) is written anew, not reused."""
    monkeypatch.setenv("SDFT_JAX_CACHE", str(tmp_path))
    spec = importlib.util.spec_from_file_location("knowledge_cfg", os.path.join(REPO, "configs", "knowledge.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    root = mod.corpus_folder(0, 5)
    os.remove(os.path.join(root, "oracle", "test.jsonl"))
    assert mod.corpus_folder(0, 5) == root and os.path.isfile(os.path.join(root, "oracle", "test.jsonl"))
