"""save_pretrained -> transformers reloads the folder -> same logits."""
import json
import os

import jax
import numpy as np

from sdft_jax.model import load_pretrained
from tests import hf_fixtures as hf


def test_export_roundtrip_through_transformers(tiny_qwen3, tmp_path):
    model = load_pretrained(tiny_qwen3, dtype="float32")
    # Change the weights so the export cannot pass by copying the source folder.
    params = jax.tree.map(lambda x: x * 1.1, model.params)
    out = str(tmp_path / "export")
    model.save_pretrained(out, params=params)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    tokens, mask = hf.left_padded_batch()
    ref = hf.hf_logits(hf.reload_hf(out), tokens, mask)
    ours = np.asarray(model.apply(params, tokens, mask))
    assert np.abs(ref - ours)[mask.astype(bool)].max() < 1e-4
    from transformers import AutoTokenizer
    assert AutoTokenizer.from_pretrained(out).chat_template


def test_sharded_export_in_bf16(tiny_llama, tmp_path):
    model = load_pretrained(tiny_llama, dtype="float32")
    out = str(tmp_path / "export")
    from sdft_jax.model import hf_io
    hf_io.save_params(out, model.params, model.config, model.hf_config, dtype="bfloat16",
                      source_dir=tiny_llama, max_shard_bytes=20_000)
    index = json.load(open(os.path.join(out, "model.safetensors.index.json")))
    assert len(set(index["weight_map"].values())) > 1
    assert json.load(open(os.path.join(out, "config.json")))["torch_dtype"] == "bfloat16"
    reloaded = load_pretrained(out, dtype="float32")
    tokens, mask = hf.left_padded_batch()
    ref = hf.hf_logits(hf.reload_hf(out), tokens, mask)
    assert np.abs(ref - np.asarray(reloaded(tokens, mask)))[mask.astype(bool)].max() < 1e-4
