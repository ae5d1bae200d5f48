"""The built-in demo (the default main job): SDFT vs SFT continual learning in a generated world,
one seed of the study in docs/DEMO.md (its arms sdft, sdft:base, sft, sft@plain, 2 tasks, curves).

    python -m sdft_jax.main                                  # = --config=configs/demo.py, ./runs/demo
    python -m sdft_jax.main --config=configs/demo.py --config.seed=1 --workdir runs/demo_seed1
    python -m sdft_jax.main --config=configs/demo.py:size=small --workdir /tmp/demo_small   # CI-sized
    python -m sdft_jax.main --config=configs/demo.py:world=substitution --workdir runs/demo_substitution
    python -m sdft_jax.main --config=configs/demo.py:methods=sdft/sdft:base/sft/sft@plain/offline/rejection \
        --workdir runs/demo_arms                                     # every arm of the study
    python -m sdft_jax.sweep --config=configs/demo.py:methods=sdft/sft --config.demo.num_tasks=3 \
        --config.demo.curve_every=0 --workdir runs/demo_sweep \
        --sweep 'demo.lr=[1e-4,3e-4,1e-3]' --sweep 'seed=[0,1,2]'        # round 1's Pareto front (docs/DEMO.md)

A ~0.9M-parameter Qwen2 is pretrained on prior skills (rev, dup, cyc) and on in-context episodes
of random letter-substitution rules (cached in $SDFT_JAX_CACHE, default ~/.cache/sdft_jax), then
taught 2 new hidden rules in sequence by each arm. world=style (the default): any form
of the right letters is correct and the expert writes a form the base never does (`f-e-a-c`);
world=substitution: one right answer, the demonstration itself (the negative control). See
docs/DEMO.md and sdft_jax/experiments/demo/world.py.
"""
import ml_collections

from configs import common
from sdft_jax.experiments.demo import world


def get_config(arg=None):
    args = common.parse_arg(arg, size="full", world="style", methods="")
    size = args.size
    if size not in ("full", "small"):
        raise ValueError(f"size={size!r}; expected full or small")
    if args.world not in world.WORLDS:
        raise ValueError(f"world={args.world!r}; expected one of {', '.join(world.WORLDS)}")
    # The study's arms except offline and rejection (time); CI's size: the two methods; sft@plain needs
    # the style world (elsewhere the demonstrations are the base's form already).
    default_arms = ("sdft/sft" if size == "small" else
                    "sdft/sdft:base/sft/sft@plain" if args.world == "style" else "sdft/sdft:base/sft")
    c = ml_collections.ConfigDict()
    c.program = "demo"
    c.seed = 0  # the new tasks' rules and words, data order, sampling
    c.demo = ml_collections.ConfigDict(dict(
        world=args.world,
        num_tasks=2,  # the study's (docs/DEMO.md): stage 2 tests the teacher that stage 1 left
        train_rows=512,  # training rows per new task
        eval_examples=64,  # held-out rows per task (and per prior skill)
        steps_per_task=120,
        prompts_per_step=32,
        # style: the middle of the first sweep {1e-4, 3e-4, 1e-3}, fixed before any comparison run, and
        # of the study's rates the one where, on its validation seeds (100, 101), both SDFT and SFT learn
        # task 1 (SFT's best accuracy 0.55 and 0.22 at 3e-4; 0.00 and 0.02 at 1e-4: nothing to match
        # the arms at; docs/DEMO.md, the study's Amendment 2); substitution: its documented runs' rate.
        lr=3e-4 if args.world == "style" else 1e-3,
        warmup_steps=6,
        # The arms, each a continual run from the same base: sdft | sft | offline | rejection,
        # METHOD:base for a teacher anchored to the base across stages (teacher.anchor=base), and
        # METHOD@plain for demonstrations in the base's own plain form instead of the expert's dash form.
        methods=tuple((args.methods or default_arms).split("/")),
        # > 0: every task, prior skill and the teacher on every task evaluated every N steps inside
        # each stage too, with KL(model || base) on the stage's prompts (results.json "curves"; the
        # headline's matched-accuracy comparison reads them).
        curve_every=20,
        teacher="ema",  # ema | frozen | live (teacher.kind of the SDFT runs)
        ema_alpha=0.01,
        # The paper skips 3 tokens to drop the teacher's "Based on the example..." preamble; here an
        # answer is 3-5 letters and the teacher has no preamble, so skipping would drop most of it.
        skip_first_tokens=0,
        # The base model: its own seed, so every demo seed starts from the same cached base.
        pretrain=ml_collections.ConfigDict(dict(seed=0, steps=800, batch=64, lr=3e-3, hidden=128, layers=4,
                                                heads=4, kv_heads=2, intermediate=384)),
        # What the pretraining and every continual stage share; each sets its own method, steps,
        # data and optimizer from the keys above (sdft_jax/experiments/demo/pretrain.py, runner.py).
        run=world_run_defaults(),
    ))
    if size == "small":  # CI's end-to-end check: a quarter of the samples, so the sweep's largest rate
        c.demo.update(dict(num_tasks=2, train_rows=256, eval_examples=32, steps_per_task=60, prompts_per_step=16,
                           lr=1e-3, curve_every=30))
        c.demo.pretrain.update(dict(steps=600))  # the style world needs more than 300 (prior skills 0.29)
    return c


def world_run_defaults() -> ml_collections.ConfigDict:
    """The paper's recipe fitted to the generated world: fp32 weights, answers of a few letters."""
    c = common.base_config()
    c.model.dtype = "float32"
    c.data.teacher_template = world.TEACHER_TEMPLATE
    c.data.max_student_prompt, c.data.max_teacher_prompt = 32, 64
    c.sampling.max_new_tokens = world.MAX_RESPONSE_TOKENS
    c.loss.chunk_size = 16
    c.checkpoint.keep = 1
    return c
