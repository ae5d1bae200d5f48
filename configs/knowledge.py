"""Knowledge acquisition in miniature (the paper's Table 1, offline): a model learns the facts of a
generated fictional-company corpus (sdft_jax/knowledge/corpus.py) with SDFT or SFT, and is scored
before and after on held-out paraphrased questions and indirect (OOD) questions, strict and
lenient. Teacher context = article + answer (the paper's "Text and Answers"); student = the question.

    python -m sdft_jax.main --config=configs/knowledge.py:model=smollm2_135m,method=sdft --workdir runs/k_sdft
    python -m sdft_jax.sweep --config=configs/knowledge.py:model=smollm2_135m --workdir runs/k \\
        --sweep 'method=[sdft,sft]' --sweep 'optim.lr=[1e-5,3e-5,1e-4]'
    python -m sdft_jax.main --config=configs/knowledge.py:model=tiny --workdir /tmp/k   # pipeline check

A continual run with one stage: results.json holds the base row and the row after training
(columns: heldout = held-out paraphrases, strict; prior:ood = indirect questions, strict;
prior:oracle_rag = the held-out questions with the article in context (the paper's oracle-RAG row);
prior:humaneval = HumanEval pass@1 on its first 40 problems and prior:drift = NLL of the base's own
answers to 24 general prompts, the prior capability; then heldout/knowledge_lenient and
prior:ood/knowledge_lenient). The corpus is written once per (seed, companies) under $SDFT_JAX_CACHE.
"""
import os
import shutil

import ml_collections

from configs import common
from sdft_jax.cache import cache_root

MODELS = {"smollm2_135m": "smollm2-135m-instruct", "qwen2_5_0_5b": "qwen2.5-0.5b-instruct"}


def get_config(arg=None):
    args = common.parse_arg(arg, model="smollm2_135m", method="sdft", companies=60, epochs=4, corpus_seed=0)
    c = common.base_config()
    c.program = "continual"
    c.method = args.method
    root = corpus_folder(args.corpus_seed, args.companies)
    c.batch.prompts_per_step = 8
    steps = max(1, args.epochs * args.companies * 4 // c.batch.prompts_per_step)  # 4 questions per company
    if args.model == "tiny":  # configs/tiny.py's random model: checks the pipeline, learns nothing
        from configs.tiny import materialize
        c.model.path, _ = materialize(seed=0)
        steps, c.eval.examples = 2, 8
        c.sampling.max_new_tokens = 16
    else:
        if args.model not in MODELS:
            raise ValueError(f"model={args.model!r}; expected tiny or one of {', '.join(MODELS)}")
        c.model.path = common.real_model_path(MODELS[args.model])
        c.sampling.max_new_tokens = 64
        c.eval.examples = 240
    c.model.dtype = "float32"
    c.data.max_student_prompt, c.data.max_teacher_prompt = 128, 384
    c.loss.chunk_size = 64
    c.checkpoint.every = 10**6
    c.optim.lr = 1e-5
    # Strict and lenient from one generation pass each (also_scorers).
    c.stages = [ml_collections.ConfigDict(dict(
        task="knowledge", name="heldout", path=os.path.join(root, "train"), steps=steps,
        eval_path=os.path.join(root, "heldout"), eval_split="test", scorer="knowledge",
        also_scorers=["knowledge_lenient"]))]
    c.eval.prior_tasks = [
        ml_collections.ConfigDict(dict(name="ood", task="knowledge", path=os.path.join(root, "ood"), split="test",
                                       scorer="knowledge", also_scorers=["knowledge_lenient"])),
        # The oracle-RAG ceiling: held-out test questions with the right article in context (no answer).
        ml_collections.ConfigDict(dict(name="oracle_rag", task="demonstrations", path=os.path.join(root, "oracle"),
                                       split="test", scorer="knowledge", also_scorers=["knowledge_lenient"],
                                       context="teacher"))]
    # Prior capability: HumanEval pass@1 on the first 40 problems (greedy; 2 for the pipeline check), and
    # drift: NLL of the base model's own answers to 24 general prompts (written once per base model).
    tiny = args.model == "tiny"
    c.eval.prior_evals = ml_collections.ConfigDict(dict(
        humaneval=dict(type="humaneval", examples=2 if tiny else 40, max_new_tokens=8 if tiny else 384),
        drift=dict(type="base_answer_nll", examples=4 if tiny else 24, max_new_tokens=8 if tiny else 128,
                   answers=os.path.join(cache_root(), "knowledge", f"base_answers_{args.model}.jsonl"))))
    return c


def corpus_folder(seed: int, companies: int) -> str:
    from sdft_jax.knowledge import corpus
    root = os.path.join(cache_root(), "knowledge", f"seed{seed}_n{companies}")
    if not all(os.path.isfile(os.path.join(root, rel)) for rel in corpus.FILES):  # absent, or from an older generator
        corpus.write(root + ".partial", companies, seed)
        shutil.rmtree(root, ignore_errors=True)
        os.replace(root + ".partial", root)
    return root
