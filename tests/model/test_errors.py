"""Checkpoint problems a user can cause, each named in the error."""
import json
import os

import numpy as np
import pytest

from sdft_jax.model import CheckpointMismatchError, ModelConfigError, load_pretrained
from sdft_jax.model.safetensors_io import SafetensorsFolder, write_safetensors
from tests import hf_fixtures as hf


def _rewrite(path, edit):
    """Rewrites model.safetensors with edit(dict name -> array) applied."""
    folder = SafetensorsFolder(path)
    tensors = {k: np.array(folder.view(k)) for k in folder.keys()}
    edit(tensors)
    target = os.path.join(path, "model.safetensors")
    os.remove(target)
    write_safetensors(target, [(k, v.shape, v.dtype) for k, v in tensors.items()], tensors.__getitem__)


def test_missing_tensor(tmp_path):
    path = hf.build("qwen2", tmp_path)
    _rewrite(path, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointMismatchError, match=r"missing tensors \(1\): model.layers.1.mlp.up_proj.weight"):
        load_pretrained(path, dtype="float32")


def test_wrong_shape_and_unexpected(tmp_path):
    path = hf.build("llama", tmp_path)

    def edit(t):
        t["model.layers.0.self_attn.k_proj.weight"] = np.zeros((8, 64), np.float32)
        t["model.layers.0.extra.weight"] = np.zeros((2,), np.float32)
    _rewrite(path, edit)
    with pytest.raises(CheckpointMismatchError) as err:
        load_pretrained(path, dtype="float32")
    msg = str(err.value)
    assert "model.layers.0.self_attn.k_proj.weight is (8, 64), expected (32, 64)" in msg
    assert "unexpected tensors (1): model.layers.0.extra.weight" in msg


def test_unsupported_rope_type(tmp_path):
    path = hf.build("llama", tmp_path)
    cfg_path = os.path.join(path, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["rope_parameters"] = {"rope_type": "longrope", "rope_theta": 10000.0, "factor": 2.0}
    json.dump(cfg, open(cfg_path, "w"))
    with pytest.raises(ModelConfigError, match="'longrope' is not supported"):
        load_pretrained(path, dtype="float32")


def test_unsupported_architecture_and_missing_folder(tmp_path):
    path = hf.build("qwen2", tmp_path)
    cfg_path = os.path.join(path, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["architectures"], cfg["model_type"] = ["GPT2LMHeadModel"], "gpt2"
    json.dump(cfg, open(cfg_path, "w"))
    with pytest.raises(ModelConfigError, match="GPT2LMHeadModel"):
        load_pretrained(path, dtype="float32")
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        load_pretrained(str(tmp_path / "no-such-dir"))


def test_folder_without_tokenizer_loads_and_names_the_folder_on_use(tmp_path):
    path = hf.build("qwen2", tmp_path)
    for name in os.listdir(path):
        if name.startswith(("tokenizer", "vocab", "merges", "special_tokens")):
            os.remove(os.path.join(path, name))
    model = load_pretrained(path, dtype="float32")  # the weights need no tokenizer
    tokens, mask = hf.left_padded_batch(length=8)
    assert np.isfinite(np.asarray(model(tokens, mask))).all()
    with pytest.raises(FileNotFoundError, match=f"{path}: no usable tokenizer"):
        model.tokenizer.pad_token_id
    model.save_pretrained(str(tmp_path / "out"))  # exporting the weights still works


def _tiny_copy(tmp_path):
    import shutil
    from tests.test_train import _tiny
    path = str(tmp_path / "model")
    shutil.copytree(_tiny().model.path, path)
    return path


def test_truncated_safetensors_names_the_file(tmp_path):
    """Before: `cannot reshape array of size 566 into shape (272,64)` (no file, no "truncated")."""
    path = _tiny_copy(tmp_path)
    weights = os.path.join(path, "model.safetensors")
    size = os.path.getsize(weights)
    with open(weights, "r+b") as f:
        f.truncate(size - 1000)
    with pytest.raises(ValueError, match=rf"^{weights}: truncated: {size - 1000} bytes, its header describes {size} "):
        load_pretrained(path, dtype="float32")
    with open(weights, "r+b") as f:
        f.truncate(100)  # into the header itself
    with pytest.raises(ValueError, match=rf"^{weights}: not a safetensors file, or truncated"):
        load_pretrained(path, dtype="float32")


def test_malformed_config_json_names_the_file_and_line(tmp_path):
    """Before: `Expecting property name enclosed in double quotes: line 3 column 1` (no file)."""
    path = _tiny_copy(tmp_path)
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write('{\n  "vocab_size": 272,\n}\n')
    with pytest.raises(ModelConfigError, match=rf"^{path}/config.json:3: not valid JSON \(Expecting property name"):
        load_pretrained(path, dtype="float32")
