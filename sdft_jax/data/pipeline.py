"""Tokenization with the truncation policy, length buckets, and a resumable batch iterator.

Truncation (never silent; every cut and skip is counted in `TokenStats`):
- teacher context too long: the demonstration is cut from its END until it fits; the question
  is never dropped (TRL truncates from the left and loses it);
- student prompt too long, or no room left for any demonstration: the example is skipped;
- SFT target (demonstration + end-of-turn; for `knowledge` rows the answer) longer than the
  completion length: cut from its end.

Batches: a per-epoch permutation from (seed, epoch); global batch b is rows
perm[b*G:(b+1)*G]; process p materializes only rows [p*G/P, (p+1)*G/P) of it. Length buckets
are chosen from the whole global batch so every process builds the same shapes. The iterator
state is {epoch, batch}; restoring it gives exactly the next batch.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Iterator, Sequence

import jax
import numpy as np

from sdft_jax import sharding as shd
from sdft_jax.data import prompts, records
from sdft_jax.data.buckets import bucket_length, buckets_up_to, left_pad, right_pad


@dataclasses.dataclass(frozen=True)
class Lengths:
    max_student_prompt: int = 1024
    max_teacher_prompt: int = 2048
    max_completion: int = 1024
    bucket_growth: float = 2.0  # prompt length buckets: see buckets.buckets_up_to

    def student_buckets(self) -> tuple[int, ...]:
        return buckets_up_to(self.max_student_prompt, growth=self.bucket_growth)

    def teacher_buckets(self) -> tuple[int, ...]:
        return buckets_up_to(self.max_teacher_prompt, growth=self.bucket_growth)


@dataclasses.dataclass
class TokenizedExample:
    index: int  # position in the source split
    id: str
    student: list[int]
    teacher: list[int]
    target: list[int]  # demonstration (knowledge: answer) + end-of-turn, for SFT


@dataclasses.dataclass
class TokenStats:
    total: int = 0
    kept: int = 0
    teacher_demo_cut: int = 0
    sft_target_cut: int = 0
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def as_dict(self) -> dict:
        return {"total": self.total, "kept": self.kept, "teacher_demo_cut": self.teacher_demo_cut,
                "sft_target_cut": self.sft_target_cut, "skipped": dict(self.skipped)}

    def summary(self) -> str:
        skipped = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())) or "none"
        return (f"{self.kept}/{self.total} examples kept; demonstration cut in {self.teacher_demo_cut} teacher "
                f"contexts; {self.sft_target_cut} SFT targets cut; skipped: {skipped}")


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def end_of_turn_id(tokenizer) -> int:
    """The token an assistant turn ends with (<|im_end|> for Qwen chat models)."""
    for token in ("<|im_end|>", "<|eot_id|>"):
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid is not None and tid >= 0:
            return tid
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenizer has no EOS token to end SFT targets with")
    return tokenizer.eos_token_id


def tokenize_example(tokenizer, ex: dict, index: int, lengths: Lengths, template: str,
                     stats: TokenStats, eot: int) -> TokenizedExample | None:
    stats.total += 1
    student = _ids(tokenizer, prompts.student_context(tokenizer, ex))
    if len(student) > lengths.max_student_prompt:
        stats.skipped["student_prompt_too_long"] += 1
        return None
    teacher = _ids(tokenizer, prompts.teacher_context(tokenizer, ex, template))
    if len(teacher) > lengths.max_teacher_prompt:
        demo_ids = _ids(tokenizer, ex["demonstration"])
        keep = len(demo_ids) - (len(teacher) - lengths.max_teacher_prompt)
        while keep > 0:  # re-render: BPE merges at the cut can shift the count by a token or two
            cut = tokenizer.decode(demo_ids[:keep])
            teacher = _ids(tokenizer, prompts.teacher_context(tokenizer, ex, template, cut))
            excess = len(teacher) - lengths.max_teacher_prompt
            if excess <= 0:
                break
            keep -= max(excess, 1)
        if keep <= 0:
            stats.skipped["teacher_context_too_long"] += 1
            return None
        stats.teacher_demo_cut += 1
    target = _ids(tokenizer, records.sft_target(ex)) + [eot]
    if len(target) > lengths.max_completion:
        target = target[: lengths.max_completion]
        stats.sft_target_cut += 1
    stats.kept += 1
    return TokenizedExample(index, ex["id"], student, teacher, target)


def tokenize_all(source, tokenizer, lengths: Lengths, template: str = prompts.DEFAULT_TEACHER_TEMPLATE,
                 progress=None) -> tuple[list[TokenizedExample], TokenStats]:
    prompts.check_template(template)
    stats, out, eot = TokenStats(), [], end_of_turn_id(tokenizer)
    for i in range(len(source)):
        t = tokenize_example(tokenizer, source[i], i, lengths, template, stats, eot)
        if t is not None:
            out.append(t)
        if progress is not None:
            progress(i + 1, len(source))
    return out, stats


class Batcher:
    """Deterministic, resumable batches of tokenized examples (numpy, this process's rows)."""

    def __init__(self, examples: list[TokenizedExample], global_batch: int, lengths: Lengths, pad_id: int,
                 seed: int = 0, shuffle: bool = True, process_index: int = 0, process_count: int = 1,
                 student_buckets: Sequence[int] | None = None, teacher_buckets: Sequence[int] | None = None):
        if global_batch % process_count:
            raise ValueError(f"batch.prompts_per_step={global_batch} is not divisible by the "
                             f"{process_count} processes")
        if len(examples) < global_batch:
            raise ValueError(f"only {len(examples)} usable examples for a batch of {global_batch}")
        self.examples, self.global_batch, self.lengths = examples, global_batch, lengths
        self.pad_id, self.seed, self.shuffle = pad_id, seed, shuffle
        self.process_index, self.process_count = process_index, process_count
        self.student_buckets = tuple(student_buckets or lengths.student_buckets())
        self.teacher_buckets = tuple(teacher_buckets or lengths.teacher_buckets())
        self.epoch, self.batch = 0, 0
        self._perm_epoch, self._perm = None, None

    @property
    def batches_per_epoch(self) -> int:
        return len(self.examples) // self.global_batch

    def get_state(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch}

    def set_state(self, state: dict) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])

    def _permutation(self) -> np.ndarray:
        if self._perm_epoch != self.epoch:
            n = len(self.examples)
            self._perm = (np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle
                          else np.arange(n))
            self._perm_epoch = self.epoch
        return self._perm

    def global_rows(self) -> list[TokenizedExample]:
        """The examples of the next global batch (all processes), without advancing."""
        perm = self._permutation()
        start = self.batch * self.global_batch
        return [self.examples[i] for i in perm[start: start + self.global_batch]]

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        if self.batch >= self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        rows = self.global_rows()
        ps = bucket_length(max(len(r.student) for r in rows), self.student_buckets, "student prompt")
        pt = bucket_length(max(len(r.teacher) for r in rows), self.teacher_buckets, "teacher prompt")
        local = self.global_batch // self.process_count
        mine = rows[self.process_index * local: (self.process_index + 1) * local]
        sp, sm = left_pad([r.student for r in mine], ps, self.pad_id)
        tp, tm = left_pad([r.teacher for r in mine], pt, self.pad_id)
        tgt, tgt_mask = right_pad([r.target for r in mine], self.lengths.max_completion, self.pad_id)
        self.batch += 1
        return {"student_prompt": sp, "student_prompt_mask": sm, "teacher_prompt": tp, "teacher_prompt_mask": tm,
                "target": tgt, "target_mask": tgt_mask,
                "index": np.asarray([r.index for r in mine], np.int32), "epoch": self.epoch}


def to_global(batch: dict, mesh) -> dict:
    """Process-local numpy rows -> global jax.Arrays sharded over the data-parallel axes."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, np.ndarray):
            out[k] = jax.make_array_from_process_local_data(shd.batch_sharding(mesh, v.ndim), v)
    return out
