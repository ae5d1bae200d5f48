"""python -m sdft_jax.eval --model PATH_OR_WORKDIR --task NAME [--split test] [--limit N] [--with_demonstration]

Prints one JSON line of metrics. PATH_OR_WORKDIR is an HF folder or a training workdir (its
export/ folder is used). Data defaults to ../shared/data for tooluse / science / medical.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from sdft_jax.data import prepare
from sdft_jax.eval.generation import evaluate
from sdft_jax.model import load_pretrained

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_DATA = {"tooluse": "../shared/data/tooluse/sdft_tooluse_eval.jsonl",
                "science": "../shared/data/science/sdft_science_eval.jsonl",
                "medical": "../shared/data/medical/huatuogpt_o1_demo.json"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True,
                    help="a Hugging Face folder or run workdir, hub id ORG/NAME[@REV] or gs:// folder")
    ap.add_argument("--task", required=True, choices=["tooluse", "science", "medical", "knowledge", "demonstrations"])
    ap.add_argument("--data", default=None, help="file or folder of the task's rows")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--with_demonstration", action="store_true", help="teacher context (ICL ceiling)")
    ap.add_argument("--max_new_tokens", type=int, default=512)
    ap.add_argument("--max_prompt", type=int, default=4096)
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--top_p", type=float, default=1.0)
    ap.add_argument("--num_samples", type=int, default=1, help="> 1 with temperature > 0: pass@k")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--data_dir", default=os.path.expanduser("~/.cache/sdft_jax/tfds"))
    ap.add_argument("--out", default=None, help="JSONL of (prompt, completion, score)")
    args = ap.parse_args(argv)

    model_path = args.model
    if os.path.isdir(os.path.join(model_path, "export")):
        model_path = os.path.join(model_path, "export")
    data = args.data or (os.path.join(_REPO, DEFAULT_DATA[args.task]) if args.task in DEFAULT_DATA else None)
    if data is None:
        ap.error(f"--data is required for task {args.task}")
    source = prepare(args.task, data, args.data_dir)
    if args.split not in source:
        ap.error(f"--split {args.split!r} not in {sorted(source)} for {data}")
    split = source[args.split]
    examples = sorted((split[i] for i in range(len(split))), key=lambda e: e["id"])  # storage order is shuffled
    examples = examples[: args.limit] if args.limit is not None else examples
    model = load_pretrained(model_path, dtype=args.dtype)
    metrics = evaluate(model, examples, args.task, with_demonstration=args.with_demonstration,
                       max_new_tokens=args.max_new_tokens, max_prompt=args.max_prompt, batch_size=args.batch_size,
                       temperature=args.temperature, top_p=args.top_p, num_samples=args.num_samples,
                       out_jsonl=args.out, progress=True)
    metrics["model"] = model_path
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
