"""Knowledge acquisition in miniature (the paper's Table 1, offline): a model learns the facts of a
generated fictional-company corpus (sdft_jax/experiments/knowledge/corpus.py) with SDFT and with SFT, and is
scored before and after on held-out paraphrased questions and indirect (OOD) questions, strict and
lenient. Teacher context = article + answer (the paper's "Text and Answers"); student = the question.

    python -m sdft_jax.main --config=configs/knowledge.py:model=smollm2_135m --workdir runs/knowledge
    python -m sdft_jax.experiments.knowledge.report runs/knowledge --update docs/EXPERIMENTS.md --figure docs/knowledge.png
    python -m sdft_jax.main --config=configs/knowledge.py:model=qwen2_5_0_5b --workdir runs/knowledge_qwen  # hours on 2 CPU cores
    python -m sdft_jax.main --config=configs/knowledge.py:model=tiny --workdir /tmp/k   # pipeline check

The compare program (sdft_jax/programs/compare.py): the base model's evaluations, then per method the same
sweep (lr {2e-5, 6e-5, 2e-4} x epochs {2, 4}; model=qwen2_5_0_5b has its own defaults, MODEL_DEFAULTS;
`lr=X` / `epochs=N` pin one; `lrs=6e-5/2e-4/6e-4`, `epoch_grid=2/4/8` give other grids; `lora=16` trains rank-16 adapters on a `lora_base=float32|bfloat16`
base; `companies=N` sizes the corpus; `humaneval=N` the HumanEval subset), each point chosen by
strict accuracy on the held-out VALIDATION questions (ties: lenient, then the earlier point), and
the chosen runs evaluated on the TEST evaluators: heldout (held-out test paraphrases), ood (indirect
questions), oracle_rag (the held-out test questions with the article in context: the paper's
oracle-RAG row; SDFT's teacher sees the answer too, docs/EXPERIMENTS.md step 1), drift (NLL of the
base's own answers to 24 general prompts) and, for Qwen2.5-Coder, humaneval (pass@1 on the first 40 problems, or `humaneval=N`). `method=sdft|sft`
runs one method, `method=sdft/sft/offline` those three (any of sdft, sft, offline, rejection). The
corpus is written once per (seed, companies) under $SDFT_JAX_CACHE.
"""
import os
import shutil

import ml_collections

from configs import common
from sdft_jax.runtime.cache import cache_root

MODELS = {"smollm2_135m": "smollm2-135m-instruct", "qwen2_5_0_5b": "qwen2.5-0.5b-instruct"}
LRS, EPOCHS = (2e-5, 6e-5, 2e-4), (2, 4)


# Per model, its documented experiment's defaults (each argument still overrides them): Qwen2.5-Coder-0.5B's
# is the second round's CPU-sized design (docs/EXPERIMENTS.md, step 3): 10 companies, rank-16 LoRA, three
# methods on a 2-point grid; `companies=30,lora=0,method=both,lrs=,epoch_grid=,...` is round 1's.
MODEL_DEFAULTS = {"qwen2_5_0_5b": dict(method="sdft/sft/offline", companies=10, lora=16, humaneval=20,
                                       lrs="1e-4/5e-4", epoch_grid="4", val_examples=30)}


def get_config(arg=None):
    defaults = dict(model="smollm2_135m", method="both", companies=30, lr=0.0, epochs=0, corpus_seed=0,
                    val_examples=60, lrs="", epoch_grid="", lora=0, lora_base="float32", humaneval=40)
    model = common.parse_arg(arg, **defaults).model
    args = common.parse_arg(arg, **{**defaults, **MODEL_DEFAULTS.get(model, {})})
    c = common.base_config()
    c.program = "compare"
    root = corpus_folder(args.corpus_seed, args.companies)
    c.data.task, c.data.path, c.data.split = "knowledge", os.path.join(root, "train"), "train"
    c.batch.prompts_per_step = 8
    steps_per_epoch = max(1, args.companies * 4 // c.batch.prompts_per_step)  # 4 questions per company
    tiny = args.model == "tiny"
    if tiny:  # configs/tiny.py's random model: checks the pipeline, learns nothing
        from configs.tiny import materialize
        c.model.path, _ = materialize(seed=0)
        c.sampling.max_new_tokens = 16
    else:
        if args.model not in MODELS:
            raise ValueError(f"model={args.model!r}; expected tiny or one of {', '.join(MODELS)}")
        c.model.path = common.real_model_path(MODELS[args.model])
        c.sampling.max_new_tokens = 64
    c.model.dtype = "float32"
    if args.lora:  # only the adapters train; the frozen base in lora_base (float32 | bfloat16)
        c.model.lora.update(dict(rank=args.lora, base_dtype=args.lora_base))
    c.data.max_student_prompt, c.data.max_teacher_prompt = 128, 384
    c.loss.chunk_size = 64
    c.checkpoint.every = 10**6
    c.optim.lr = args.lr or LRS[0]
    c.steps = (args.epochs or EPOCHS[-1]) * steps_per_epoch
    lrs = [args.lr] if args.lr else [float(x) for x in args.lrs.split("/")] if args.lrs else LRS
    epochs = [args.epochs] if args.epochs else [int(x) for x in args.epoch_grid.split("/")] if args.epoch_grid else EPOCHS
    n = 2 if tiny else args.companies  # rows evaluated per split: every one (2 on the tiny model)

    def accuracy(split_path, split, rows, **kw):
        return dict(type="accuracy", path=os.path.join(root, split_path), split=split, scorer="knowledge",
                    also_scorers=["knowledge_lenient"], examples=rows, **kw)

    c.evals = ml_collections.ConfigDict(dict(
        val=accuracy("heldout", "validation", 2 if tiny else args.val_examples, task="knowledge")))
    evals = dict(
        heldout=accuracy("heldout", "test", 4 * n, task="knowledge"),
        ood=accuracy("ood", "test", 3 * n, task="knowledge"),
        oracle_rag=accuracy("oracle", "test", 4 * n, task="demonstrations", context="teacher"),
        drift=dict(type="base_answer_nll", examples=4 if tiny else 24, max_new_tokens=8 if tiny else 128,
                   answers=os.path.join(cache_root(), "knowledge", f"base_answers_{args.model}.jsonl")))
    panels = ["drift"]
    if args.model.startswith("qwen") or tiny:  # a coder model; SmolLM2-135M is not one
        evals["humaneval"] = dict(type="humaneval", examples=2 if tiny else args.humaneval,
                                 max_new_tokens=8 if tiny else 384)
        panels.append("humaneval")
    c.compare = ml_collections.ConfigDict(dict(
        methods=["sdft", "sft"] if args.method == "both" else args.method.split("/"),
        sweep=[f"optim.lr=[{','.join(map(str, lrs))}]", f"steps=[{','.join(str(e * steps_per_epoch) for e in epochs)}]"],
        select="val", tie_break="val/knowledge_lenient", evals=evals,
        ceiling={"heldout": "oracle_rag", "heldout/knowledge_lenient": "oracle_rag/knowledge_lenient"},
        plot=["heldout", "heldout/knowledge_lenient", "ood", "ood/knowledge_lenient"], panels=panels,
        keep="chosen"))  # Qwen 0.5B: 4.3 GB per point kept otherwise (checkpoint + export)
    return c


def corpus_folder(seed: int, companies: int) -> str:
    from sdft_jax.experiments.knowledge import corpus
    root = os.path.join(cache_root(), "knowledge", f"seed{seed}_n{companies}")
    if not all(os.path.isfile(os.path.join(root, rel)) for rel in corpus.FILES):  # absent, or from an older generator
        corpus.write(root + ".partial", companies, seed)
        shutil.rmtree(root, ignore_errors=True)
        os.replace(root + ".partial", root)
    return root
