"""Pretrains the demo's base model with the project's own SFT step, deterministic from the seed,
and caches the HF checkpoint in a user cache folder ($SDFT_JAX_CACHE, default ~/.cache/sdft_jax).

The cache key is a hash of everything that determines the weights (world version, architecture,
corpus size, optimizer, seed), so a changed setting never reuses a stale base.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import ml_collections

from sdft_jax.experiments.demo import world
from sdft_jax.model.random_checkpoint import build_random_checkpoint
from sdft_jax.programs.train import run
from sdft_jax.runtime.cache import cache_root

WORLD_VERSION = 2


def base_key(pre: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict, world_name: str) -> str:
    run = {k: v for k, v in defaults.to_dict().items() if k != "evals"}  # evaluators do not change the weights
    blob = json.dumps({"world": WORLD_VERSION, "kind": world_name, **pre.to_dict(), "run": run}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def pretrain_config(pre: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict, init_path: str,
                    corpus: str) -> ml_collections.ConfigDict:
    """SFT on the pretraining corpus; `defaults` = the demo config's `demo.run` (shared settings)."""
    c = ml_collections.ConfigDict(defaults.to_dict())  # a deep copy
    c.method = "sft"
    c.seed = pre.seed
    c.steps = pre.steps
    c.model.path = init_path
    c.data.task, c.data.path = "demonstrations", corpus
    c.batch.prompts_per_step = pre.batch
    c.optim.lr, c.optim.warmup_steps = pre.lr, max(pre.steps // 20, 1)
    c.loss.aggregation = "token_mean"
    c.checkpoint.every = max(pre.steps // 4, 1)
    c.log.every = max(pre.steps // 40, 1)
    return c


def pretrained_base(pre: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict, world_name: str,
                    say=print) -> str:
    """Path of the cached base checkpoint, pretraining it first when absent. An interrupted
    pretraining resumes from its last checkpoint (its work folder is kept until it finishes)."""
    final = os.path.join(cache_root(), "demo_base", base_key(pre, defaults, world_name))
    if os.path.isfile(os.path.join(final, "config.json")):
        say(f"demo base model: cached at {final}")
        return final
    work = final + ".work"
    init = build_random_checkpoint(os.path.join(work, "init"), seed=pre.seed, tokenizer=world.tokenizer(),
                            hidden=pre.hidden, layers=pre.layers, heads=pre.heads, kv_heads=pre.kv_heads,
                            intermediate=pre.intermediate)
    corpus = os.path.join(work, "corpus", "train.jsonl")
    if not os.path.isfile(corpus):
        world.write_jsonl(corpus, world.pretraining_rows(pre.steps * pre.batch, pre.seed, world_name))
    say(f"demo base model: pretraining {pre.steps} steps x {pre.batch} rows (cached afterwards in {final})")
    run(pretrain_config(pre, defaults, init, corpus), os.path.join(work, "run"))
    shutil.copytree(os.path.join(work, "run", "export"), final + ".partial", dirs_exist_ok=True)
    os.replace(final + ".partial", final)
    shutil.rmtree(work, ignore_errors=True)
    return final
