"""Hugging Face safetensors <-> our params dict.

Our layout: `embed [V,D]`, `layers.{name} [L, ...]` (stacked; projections stored [in, out]),
`final_norm [D]`, `lm_head [D,V]` (absent when tied). Each leaf is built with
`jax.make_array_from_callback`, so every device shard is read from the memory-mapped file by
slicing: no full host copy, and on a pod each host reads only what its devices hold.
"""
from __future__ import annotations

import json
import os
import re
import shutil

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Sharding

from sdft_jax.model.config import ModelConfig
from sdft_jax.model.params import hf_names, is_adapter
from sdft_jax.model.safetensors_io import SafetensorsFolder, write_safetensors

# Buffers some old checkpoints carry; they hold nothing we need.
IGNORED = re.compile(r".*rotary_emb\.inv_freq$")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "tokenizer.model", "added_tokens.json", "chat_template.jinja",
                   "generation_config.json")


class CheckpointMismatchError(ValueError):
    """Missing, unexpected or mis-shaped tensors; the message lists every culprit."""


def _flat(params) -> dict[tuple[str, ...], object]:
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return {tuple(k.key for k in path): leaf for path, leaf in leaves}


def _validate(folder: SafetensorsFolder, abstract: dict, cfg: ModelConfig, source: str) -> None:
    expected, problems = set(), []
    for path, leaf in _flat(abstract).items():
        per_slice = leaf.shape[1:] if path[0] == "layers" else leaf.shape
        for name, transposed in hf_names(path, cfg.num_layers):
            expected.add(name)
            if name not in folder.keys():
                continue
            want = tuple(reversed(per_slice)) if transposed else tuple(per_slice)
            if folder.shape(name) != want:
                problems.append(f"wrong shape: {name} is {folder.shape(name)}, expected {want}")
    present = set(folder.keys())
    missing = sorted(expected - present)
    unexpected = sorted(k for k in present - expected
                        if not IGNORED.match(k) and not (cfg.tie_word_embeddings and k == "lm_head.weight"))
    if missing:
        problems.append(f"missing tensors ({len(missing)}): {', '.join(missing[:20])}"
                        + (" ..." if len(missing) > 20 else ""))
    if unexpected:
        problems.append(f"unexpected tensors ({len(unexpected)}): {', '.join(unexpected[:20])}"
                        + (" ..." if len(unexpected) > 20 else ""))
    if problems:
        raise CheckpointMismatchError(f"{source}: checkpoint does not match the {cfg.arch} config:\n  "
                                      + "\n  ".join(problems))


def load_params(path: str, cfg: ModelConfig, abstract: dict, shardings) -> dict:
    """Reads every leaf of `abstract` (a params dict of ShapeDtypeStruct) into `shardings`."""
    folder = SafetensorsFolder(path)
    _validate(folder, abstract, cfg, path)
    flat_sh = _flat(shardings)

    def build(key, leaf):
        names = hf_names(key, cfg.num_layers)
        stacked = key[0] == "layers"

        def view(i):
            name, transposed = names[i]
            v = folder.view(name)
            return v.T if transposed else v

        def callback(index):
            if stacked:
                layer_ids = range(cfg.num_layers)[index[0]]
                return np.stack([np.asarray(view(i)[index[1:]], dtype=leaf.dtype) for i in layer_ids])
            return np.asarray(view(0)[index], dtype=leaf.dtype)

        sharding: Sharding = flat_sh[key]
        return jax.make_array_from_callback(leaf.shape, sharding, callback)

    flat = {k: build(k, leaf) for k, leaf in _flat(abstract).items()}
    return _unflatten(flat)


def _unflatten(flat: dict[tuple[str, ...], object]) -> dict:
    out: dict = {}
    for key, value in flat.items():
        node = out
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = value
    return out


def _to_host(x) -> np.ndarray:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def save_params(out_dir: str, params: dict, cfg: ModelConfig, hf_config: dict, *, dtype=None,
                tokenizer=None, source_dir: str | None = None,
                max_shard_bytes: int = 4 << 30) -> None:
    """Writes an HF folder (safetensors, config.json, tokenizer, generation config).

    Tensors are fetched from devices one layer slice at a time. On multi-host jobs every process
    takes part in the gathers; only process 0 writes."""
    flat = _flat(params)
    if any(is_adapter(k) for k in flat):
        raise ValueError("save_params: the params hold LoRA adapters; merge them first (model.lora.merged) or "
                         "export them with model.lora.save_peft_adapter")
    writer = jax.process_index() == 0
    if writer:
        os.makedirs(out_dir, exist_ok=True)
    specs = []  # (hf name, shape, dtype, our key, layer index or None, transposed)
    for key, leaf in flat.items():
        dt = np.dtype(dtype or leaf.dtype)
        stacked = key[0] == "layers"
        per_slice = leaf.shape[1:] if stacked else leaf.shape
        for i, (name, transposed) in enumerate(hf_names(key, cfg.num_layers)):
            shape = tuple(reversed(per_slice)) if transposed else tuple(per_slice)
            specs.append((name, shape, dt, key, i if stacked else None, transposed))
    specs.sort(key=lambda s: _hf_sort_key(s[0]))

    # Group into files by size.
    shards, current, size = [], [], 0
    for spec in specs:
        nbytes = int(np.prod(spec[1], dtype=np.int64)) * spec[2].itemsize
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(spec)
        size += nbytes
    shards.append(current)

    by_name = {s[0]: s for s in specs}
    cache: dict = {}

    def fetch(name):
        _, _, _, key, layer, transposed = by_name[name]
        if (key, layer) not in cache:
            leaf = flat[key] if layer is None else flat[key][layer]
            cache.clear()
            cache[(key, layer)] = _to_host(leaf)
        arr = cache[(key, layer)]
        return arr.T if transposed else arr

    file_names = (["model.safetensors"] if len(shards) == 1 else
                  [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
    weight_map = {}
    for fname, shard in zip(file_names, shards):
        target = os.path.join(out_dir, fname) if writer else os.devnull
        if writer:
            write_safetensors(target, [(s[0], s[1], s[2]) for s in shard], fetch, metadata={"format": "pt"})
        else:  # still take part in the collective gathers
            for s in shard:
                fetch(s[0])
        weight_map.update({s[0]: fname for s in shard})
    if not writer:
        return
    if len(shards) > 1:
        total = sum(int(np.prod(s[1], dtype=np.int64)) * s[2].itemsize for s in specs)
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    config = dict(hf_config)
    dtype_name = str(np.dtype(dtype or next(iter(flat.values())).dtype))
    config["torch_dtype"] = config["dtype"] = dtype_name
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    if source_dir and os.path.abspath(source_dir) != os.path.abspath(out_dir):
        for name in TOKENIZER_FILES:
            src = os.path.join(source_dir, name)
            if os.path.isfile(src):
                shutil.copyfile(src, os.path.join(out_dir, name))
    elif tokenizer:  # not a MissingTokenizer
        tokenizer.save_pretrained(out_dir)
    gen_path = os.path.join(out_dir, "generation_config.json")
    if not os.path.isfile(gen_path):
        gen = {k: hf_config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in hf_config}
        with open(gen_path, "w") as f:
            json.dump(gen, f, indent=2)


def _hf_sort_key(name: str):
    m = re.match(r"model\.layers\.(\d+)\.(.*)", name)
    return (1, int(m.group(1)), m.group(2)) if m else (0 if "embed" in name else 2, 0, name)
