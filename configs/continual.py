"""The paper's sequential experiment: tool use -> science -> medical, one model, SDFT or SFT.

    python -m sdft_jax.main --config=configs/continual.py:model=qwen2_5_0_5b,method=sdft --workdir runs/cont
    python -m sdft_jax.main --config=configs/continual.py:model=tiny --workdir /tmp/cont   # pipeline check

After each stage every task is evaluated (student context, greedy) on its test rows; results.json
holds the accuracy matrix, average accuracy, backward / forward transfer and normalized curves.
Offline caveat: the ToolAlpaca training split is not in ../shared/data, so the tool-use stage
trains on the same 97 rows it is evaluated on (a memorization check, not the paper's number);
point `stages[0].path` at the training split on a machine that has it.
"""
import ml_collections

from configs import common

_shared = common.shared_data


def get_config(arg=None):
    args = common.parse_arg(arg, model="qwen2_5_0_5b", method="sdft")
    c = common.base_config()
    c.program = "continual"
    c.method, model = args.method, args.model
    if model == "tiny":  # configs/tiny.py's random model and toy data
        from configs.tiny import materialize
        c.model.path, toy = materialize(seed=0)
        c.model.dtype = "float32"
        c.stages = [ml_collections.ConfigDict(dict(task="demonstrations", path=toy, steps=2, scorer="exact_match")),
                    ml_collections.ConfigDict(dict(task="demonstrations", path=toy, steps=2, scorer="exact_match"))]
        c.batch.prompts_per_step, c.sampling.max_new_tokens = 8, 16
        c.data.max_student_prompt, c.data.max_teacher_prompt = 128, 256
        c.eval.examples, c.checkpoint.every, c.loss.chunk_size = 8, 100, 16
        c.optim.lr, c.optim.warmup_steps = 1e-3, 1
        return c
    c.model.path = common.real_model_path({"qwen2_5_0_5b": "qwen2.5-0.5b-instruct",
                                                    "smollm2_135m": "smollm2-135m-instruct"}.get(model, model))
    c.model.dtype = "float32"
    c.stages = [
        ml_collections.ConfigDict(dict(task="tooluse", path=_shared("tooluse/sdft_tooluse_eval.jsonl"), steps=50,
                                       split="test", eval_path=_shared("tooluse/sdft_tooluse_eval.jsonl"))),
        ml_collections.ConfigDict(dict(task="science", path=_shared("science/sciknoweval_chemistry_L3"), steps=50,
                                       eval_path=_shared("science/sdft_science_eval.jsonl"))),
        ml_collections.ConfigDict(dict(task="medical", path=_shared("medical"), steps=50)),
    ]
    c.batch.prompts_per_step = 8
    c.sampling.max_new_tokens = 256
    c.data.max_student_prompt, c.data.max_teacher_prompt = 1024, 2048
    c.eval.examples = 20
    c.loss.chunk_size = 64
    return c
