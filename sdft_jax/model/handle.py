"""`load_pretrained` and the model handle: config, params, tokenizer and a pure `apply`."""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from sdft_jax import sharding as shd
from sdft_jax.model import hf_io, lora, quant
from sdft_jax.model import params as param_specs
from sdft_jax.model.config import ModelConfig, ModelConfigError, read_hf_config
from sdft_jax.model.source import local_folder
from sdft_jax.model.transformer import Transformer

def abstract_model(cfg: ModelConfig):
    """(graphdef, params dict of ShapeDtypeStruct) without allocating anything."""
    model = nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model, nnx.Param)
    return graphdef, nnx.to_pure_dict(state)


def param_logical_axes(params: dict) -> dict:
    """Logical-axis tuple for every leaf of a params dict (same structure), from model/params.py."""
    out = {k: param_specs.logical_axes((k,)) for k in params if k != "layers"}
    out["layers"] = {k: param_specs.logical_axes(("layers", k)) for k in params["layers"]}
    return out


def check_mesh_fits(cfg: ModelConfig, mesh: Mesh) -> None:
    tp = mesh.shape["tensor"]
    for what, n in (("num_attention_heads", cfg.num_heads), ("num_key_value_heads", cfg.num_kv_heads)):
        if n % tp:
            raise shd.MeshError(f"mesh.tensor={tp} does not divide the model's {what}={n}; "
                                f"choose a tensor axis size that divides both head counts")


def param_shardings(cfg: ModelConfig, mesh: Mesh, abstract: dict, rules=shd.TRAIN_RULES):
    check_mesh_fits(cfg, mesh)
    return shd.tree_shardings(mesh, param_logical_axes(abstract), abstract, rules)


def init_params(cfg: ModelConfig, seed: int, mesh: Mesh | None = None) -> dict:
    """Random parameters (normal 0.02, unit norms), created directly in their sharding."""
    graphdef, abstract = abstract_model(cfg)
    mesh = mesh or shd.single_device_mesh()
    shardings = param_shardings(cfg, mesh, abstract)

    @functools.partial(jax.jit, out_shardings=shardings)
    def make():
        return nnx.to_pure_dict(nnx.state(Transformer(cfg, rngs=nnx.Rngs(seed)), nnx.Param))

    return make()


def init_adapters(cfg: ModelConfig, seed: int, shardings: dict) -> dict:
    """The LoRA adapters a random init with `seed` creates (the base's random weights are dead code
    in this program, so they are never materialized): A kaiming-uniform, B = 0."""
    @functools.partial(jax.jit, out_shardings=shardings)
    def make():
        return lora.split_adapters(nnx.to_pure_dict(nnx.state(Transformer(cfg, rngs=nnx.Rngs(seed)), nnx.Param)))[0]
    return make()


def make_apply(graphdef):
    """apply(params, tokens, attention_mask=None, positions=None) -> fp32 logits [B, T, V]."""
    def apply(params, tokens, attention_mask=None, positions=None):
        return nnx.merge(graphdef, params)(tokens, positions, attention_mask)
    return apply


@dataclasses.dataclass
class PretrainedModel:
    """What `load_pretrained` returns. `apply` is pure; `__call__` uses the loaded params."""
    config: ModelConfig
    params: dict
    graphdef: Any
    tokenizer: Any
    mesh: Mesh
    hf_config: dict
    path: str | None = None
    load_seconds: float = 0.0

    def __post_init__(self):
        self._apply = make_apply(self.graphdef)
        self._jit_apply = jax.jit(self._apply)

    def apply(self, params, tokens, attention_mask=None, positions=None):
        return self._jit_apply(params, tokens, attention_mask, positions)

    def module(self, params=None):
        """The NNX module merged with `params` (default: the loaded ones)."""
        return nnx.merge(self.graphdef, self.params if params is None else params)

    def __call__(self, tokens, attention_mask=None, positions=None):
        tokens = jnp.asarray(np.asarray(tokens), jnp.int32)
        if attention_mask is not None:
            attention_mask = jnp.asarray(np.asarray(attention_mask), jnp.int32)
        if positions is not None:
            positions = jnp.asarray(np.asarray(positions), jnp.int32)
        return self.apply(self.params, tokens, attention_mask, positions)

    def save_pretrained(self, out_dir: str, params=None, dtype=None) -> None:
        """An HF folder; LoRA adapters are merged into the base weights."""
        params = self.params if params is None else params
        if lora.has_adapters(params):
            params = lora.merged(params, self.config)
        hf_io.save_params(out_dir, params, self.config,
                          self.hf_config, dtype=dtype, tokenizer=self.tokenizer, source_dir=self.path)


_VOCAB_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


class MissingTokenizer:
    """Stands where a model folder has no usable tokenizer: the weights load, and the first use of
    the tokenizer raises one error naming the folder."""

    def __init__(self, path: str, reason: str):
        self._path, self._reason = path, reason

    def __getattr__(self, name):
        raise FileNotFoundError(f"{self._path}: no usable tokenizer ({self._reason}); the weights loaded, but "
                                f"tokenizing needs tokenizer.json (or tokenizer_config.json and vocabulary files) "
                                f"in that folder")

    def __bool__(self):
        return False


def load_tokenizer(path: str):
    from transformers import AutoTokenizer  # here: transformers takes seconds to import; only loading needs it
    files = os.listdir(path) if os.path.isdir(path) else []
    # transformers 5 silently builds an EMPTY tokenizer from a folder without vocabulary files.
    if not any(f in _VOCAB_FILES or f.endswith(".tiktoken") for f in files):
        return MissingTokenizer(path, f"none of {', '.join(_VOCAB_FILES)} is there")
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as e:
        return MissingTokenizer(path, " ".join(str(e).split())[:200])


def placed_like(like, other):
    """`other`'s arrays in `like`'s dtypes and shardings (weights of one architecture read from another
    checkpoint); None when the two trees differ in structure or shapes."""
    if jax.tree.structure(like) != jax.tree.structure(other) or any(
            a.shape != b.shape for a, b in zip(jax.tree.leaves(like), jax.tree.leaves(other))):
        return None
    return jax.tree.map(lambda a, b: jax.device_put(b.astype(a.dtype), a.sharding), like, other)


def tokenizer_difference(a, b) -> str:
    """'' when two tokenizers encode alike (the same vocabulary, ids and special tokens), else the
    first difference in words: an external teacher scores the student's token ids."""
    va, vb = a.get_vocab(), b.get_vocab()
    if len(va) != len(vb):
        return f"{len(va):,} vs {len(vb):,} tokens"
    moved = next((tok for tok, i in sorted(va.items(), key=lambda kv: kv[1]) if vb.get(tok) != i), None)
    if moved is not None:
        return f"token {moved!r} has id {va[moved]} vs {vb.get(moved)}"
    for name in ("eos_token", "pad_token", "bos_token"):
        if getattr(a, name, None) != getattr(b, name, None):
            return f"{name} {getattr(a, name, None)!r} vs {getattr(b, name, None)!r}"
    if sorted(a.all_special_tokens) != sorted(b.all_special_tokens):
        return f"special tokens {sorted(a.all_special_tokens)} vs {sorted(b.all_special_tokens)}"
    return ""


def model_config(hf_config: dict, source: str, *, dtype: str = "bfloat16", compute_dtype: str | None = None,
                 remat: str = "none", scan_layers: bool = True, lora_rank: int = 0, lora_alpha: float = 16.0,
                 lora_targets: tuple[str, ...] = (), base_quant: str = "", attention: str = "xla",
                 query_block: int = 256) -> ModelConfig:
    """The ModelConfig load_pretrained builds from a config.json and its options (no weights read)."""
    return ModelConfig.from_hf_dict(hf_config, source=source, param_dtype=dtype, dtype=compute_dtype or dtype,
                                    remat=remat, scan_layers=scan_layers, lora_rank=lora_rank, lora_alpha=lora_alpha,
                                    lora_targets=tuple(lora_targets) if lora_rank else (), base_quant=base_quant,
                                    attention=attention, query_block=query_block)


def load_pretrained(path: str, dtype: str = "bfloat16", mesh: Mesh | None = None, *,
                    compute_dtype: str | None = None, remat: str = "none", scan_layers: bool = True,
                    rules=shd.TRAIN_RULES, tokenizer: bool = True, lora_rank: int = 0, lora_alpha: float = 16.0,
                    lora_targets: tuple[str, ...] = (), lora_seed: int = 0, base_quant: str = "",
                    attention: str = "xla", query_block: int = 256) -> PretrainedModel:
    """Loads an HF model (a local folder, hub id or remote folder: model/source.py) straight into
    the mesh's parameter sharding.

    dtype: parameter dtype ("float32" or "bfloat16"); compute_dtype defaults to dtype.
    lora_rank > 0: adds LoRA adapters on `lora_targets`, initialized from `lora_seed` (B = 0, so
    the model's outputs are the base's). base_quant "int8" | "nf4" (QLoRA): the base's projections
    are quantized as they load (model/quant.py), one leaf at a time. attention: the cache-less
    forwards' kernel, xla | cudnn | splash (model/attention.py; `auto` is resolved by the caller).
    """
    start = time.perf_counter()
    path = local_folder(path)  # a hub id or gs:// path: downloaded / copied once into a local cache
    hf_config = read_hf_config(path)
    cfg = model_config(hf_config, os.path.join(path, "config.json"), dtype=dtype, compute_dtype=compute_dtype,
                       remat=remat, scan_layers=scan_layers, lora_rank=lora_rank, lora_alpha=lora_alpha,
                       lora_targets=lora_targets, base_quant=base_quant, attention=attention,
                       query_block=query_block)
    mesh = mesh or shd.single_device_mesh()
    graphdef, abstract = abstract_model(cfg)
    adapter_sh, base_sh = lora.split_adapters(param_shardings(cfg, mesh, abstract, rules))
    if cfg.base_quant:
        params = _load_quantized(path, cfg, base_sh, mesh, rules)
    else:
        params = hf_io.load_params(path, cfg, lora.split_adapters(abstract)[1], base_sh)
    if cfg.lora_rank:
        params = lora.combine(params, init_adapters(cfg, lora_seed, adapter_sh))
    tok = load_tokenizer(path) if tokenizer else None
    jax.block_until_ready(params)
    return PretrainedModel(cfg, params, graphdef, tok, mesh, hf_config, path,
                           load_seconds=time.perf_counter() - start)


def _load_quantized(path: str, cfg: ModelConfig, shardings: dict, mesh: Mesh, rules) -> dict:
    """The base in cfg.param_dtype, each projection quantized (and its full-precision copy freed) in turn."""
    plain = cfg.replace(base_quant="", lora_rank=0, lora_targets=())
    _, abstract = abstract_model(plain)
    for name in param_specs.QUANTIZABLE:
        problem = quant.check_shape(cfg.base_quant, name, abstract["layers"][name].shape[1])
        if problem:
            raise ModelConfigError(f"model.lora.base_dtype={cfg.base_quant}: {problem}")
    params = hf_io.load_params(path, plain, abstract, param_shardings(plain, mesh, abstract, rules))
    layers = params["layers"]
    for name in param_specs.QUANTIZABLE:
        out_sh = (shardings["layers"][f"{name}_qcodes"], shardings["layers"][f"{name}_qscale"])
        layers[f"{name}_qcodes"], layers[f"{name}_qscale"] = quant.quantize_leaf(layers.pop(name), cfg.base_quant,
                                                                                  out_sh)
    return params


def from_params(cfg: ModelConfig, params: dict, hf_config: dict, tokenizer=None, mesh=None,
                path: str | None = None) -> PretrainedModel:
    graphdef, _ = abstract_model(cfg)
    return PretrainedModel(cfg, params, graphdef, tokenizer, mesh or shd.single_device_mesh(),
                           hf_config, path)
