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

from sdft_jax import config_defaults
from sdft_jax.demo import world

WORLD_VERSION = 2


def base_key(pre: ml_collections.ConfigDict) -> str:
    blob = json.dumps({"world": WORLD_VERSION, **pre.to_dict()}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def pretrain_config(pre: ml_collections.ConfigDict, init_path: str, corpus: str) -> ml_collections.ConfigDict:
    c = config_defaults.base_config()
    c.method = "sft"
    c.seed = pre.seed
    c.steps = pre.steps
    c.model.path, c.model.dtype = init_path, "float32"
    c.data.task, c.data.path = "demonstrations", corpus
    c.data.teacher_template = world.TEACHER_TEMPLATE
    c.data.max_student_prompt, c.data.max_teacher_prompt = 32, 64
    c.sampling.max_new_tokens = world.MAX_RESPONSE_TOKENS
    c.batch.prompts_per_step = pre.batch
    c.optim.lr, c.optim.warmup_steps = pre.lr, max(pre.steps // 20, 1)
    c.loss.aggregation, c.loss.chunk_size = "token_mean", 16
    c.checkpoint.every, c.checkpoint.keep = max(pre.steps // 4, 1), 1
    c.log.every = max(pre.steps // 40, 1)
    return c


def pretrained_base(pre: ml_collections.ConfigDict, say=print) -> str:
    """Path of the cached base checkpoint, pretraining it first when absent. An interrupted
    pretraining resumes from its last checkpoint (its work folder is kept until it finishes)."""
    from sdft_jax.model.random_checkpoint import build_random_checkpoint
    from sdft_jax.train import run
    final = os.path.join(config_defaults.cache_root(), "demo_base", base_key(pre))
    if os.path.isfile(os.path.join(final, "config.json")):
        say(f"demo base model: cached at {final}")
        return final
    work = final + ".work"
    init = build_random_checkpoint(os.path.join(work, "init"), seed=pre.seed, tokenizer=world.tokenizer(),
                            hidden=pre.hidden, layers=pre.layers, heads=pre.heads, kv_heads=pre.kv_heads,
                            intermediate=pre.intermediate)
    corpus = os.path.join(work, "corpus", "train.jsonl")
    if not os.path.isfile(corpus):
        world.write_jsonl(corpus, world.pretraining_rows(pre.steps * pre.batch, pre.seed))
    say(f"demo base model: pretraining {pre.steps} steps x {pre.batch} rows (cached afterwards in {final})")
    run(pretrain_config(pre, init, corpus), os.path.join(work, "run"))
    shutil.copytree(os.path.join(work, "run", "export"), final + ".partial", dirs_exist_ok=True)
    os.replace(final + ".partial", final)
    shutil.rmtree(work, ignore_errors=True)
    return final
