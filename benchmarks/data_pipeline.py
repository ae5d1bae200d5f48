"""Per-task example counts, truncation statistics and input-pipeline throughput.

    python benchmarks/data_pipeline.py --tokenizer $SDFT_REAL_MODELS/qwen2.5-tokenizer \
        [--data ../shared/data] [--lengths 1024,2048]

For each task file set in ../shared/data: examples per split (TFDS array_record build), then,
for each max length L (student prompt = teacher context = completion = L), how many teacher
contexts had their demonstration cut, how many examples were skipped and why, and SFT targets
cut. Throughput = examples tokenized (both contexts + target) per second, then batches/s.
"""
import argparse
import os
import tempfile
import time


TASKS = [("tooluse", "tooluse"), ("science", "science/sdft_science_eval.jsonl"),
         ("science", "science/sciknoweval_chemistry_L3"), ("medical", "medical")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--lengths", default="1024,2048")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from sdft_jax.data import Batcher, Lengths, prepare, tokenize_all
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    work = tempfile.mkdtemp()
    print("| task | source | splits | L | kept | demo cut (teacher) | skipped | SFT target cut | tokenize ex/s |")
    print("|---|---|---|---:|---:|---:|---|---:|---:|")
    throughput = None
    for task, rel in TASKS:
        source = prepare(task, os.path.join(args.data, rel), work)
        splits = ", ".join(f"{k} {len(v)}" for k, v in sorted(source.items()))
        rows = [ex for split in source.values() for ex in split]
        for L in [int(x) for x in args.lengths.split(",")]:
            start = time.perf_counter()
            examples, stats = tokenize_all(rows, tok, Lengths(L, L, L))
            rate = len(rows) / (time.perf_counter() - start)
            skipped = ", ".join(f"{k} {v}" for k, v in stats.skipped.items()) or "0"
            print(f"| {task} | {rel} | {splits} | {L} | {stats.kept}/{stats.total} | {stats.teacher_demo_cut} | "
                  f"{skipped} | {stats.sft_target_cut} | {rate:,.0f} |", flush=True)
            if throughput is None and len(examples) >= 32:
                batcher = Batcher(examples, 32, Lengths(L, L, L), tok.pad_token_id)
                start, n = time.perf_counter(), 0
                while time.perf_counter() - start < 2.0:
                    next(batcher)
                    n += 1
                throughput = (n / (time.perf_counter() - start), L)
    if throughput:
        print(f"\nbatching (pad + bucket, 32 examples per batch, L={throughput[1]}): {throughput[0]:,.0f} batches/s "
              f"= {32 * throughput[0]:,.0f} examples/s")


if __name__ == "__main__":
    main()
