"""Drift from the base model on general prompts: the current model's NLL per token of the BASE
model's own greedy answers to a fixed set of general questions (the knowledge experiment's second
prior-capability measure, next to HumanEval). It rises as the model moves away from what it used to
say, whatever the training task; a model that kept its behaviour stays near the base's value.

    config.evals.drift = dict(type="base_answer_nll", answers="WORKDIR/base_answers.jsonl")

The answers are generated once, by the model the evaluator is first built with (the base: a
continual run evaluates the base before any stage), and kept in `answers`; later builds read them.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile

from sdft_jax import sharding as shd
from sdft_jax.data import Lengths
from sdft_jax.eval.generation import evaluate
from sdft_jax.eval.heldout_nll import HeldoutNLL

GENERAL_PROMPTS = (
    "What causes the seasons on Earth?",
    "Explain in two sentences what a prime number is.",
    "Write a haiku about autumn rain.",
    "What is the difference between weather and climate?",
    "Give three tips for writing a clear email.",
    "How does a refrigerator keep food cold?",
    "What is 17 multiplied by 23? Show your steps.",
    "Summarize the plot of Romeo and Juliet in three sentences.",
    "Write a Python function that returns the factorial of n.",
    "Why is the sky blue?",
    "List four renewable sources of energy.",
    "What does a central bank do?",
    "Translate 'good morning, how are you?' into French.",
    "Explain what photosynthesis is to a ten-year-old.",
    "What are the main differences between a list and a tuple in Python?",
    "Suggest a name for a small bakery and explain why.",
    "How many minutes are there in a week? Explain.",
    "What is the boiling point of water at sea level in Fahrenheit?",
    "Describe the water cycle in a few sentences.",
    "What is a good way to start learning to play the guitar?",
    "Explain the difference between RAM and storage in a computer.",
    "Write a short, polite message declining a meeting invitation.",
    "Why do we have leap years?",
    "What is the capital of Australia, and why is it not Sydney?",
)


def _rows(prompts, answers=None) -> list[dict]:
    return [{"task": "demonstrations", "id": f"general/{i}", "system": "", "prompt": p,
             "demonstration": answers[i] if answers else "", "answer": "", "raw": ""} for i, p in enumerate(prompts)]


class BaseAnswerNLL:
    def __init__(self, name: str, ctx, *, answers: str, examples: int = 0, max_new_tokens: int = 0,
                 every: int = 0):
        c = ctx.defaults
        prompts = GENERAL_PROMPTS[: examples or len(GENERAL_PROMPTS)]
        new_tokens = max_new_tokens or c.max_new_tokens
        if not os.path.isfile(answers):
            _write_base_answers(ctx.model, prompts, answers, new_tokens, c.max_student_prompt)
        rows = [json.loads(line) for line in open(answers)]
        # Every answer whole, with its end-of-turn token: the value depends on the file alone.
        tok = ctx.model.tokenizer
        longest = max(len(tok(r["demonstration"], add_special_tokens=False).input_ids) for r in rows)
        lengths = Lengths(c.max_student_prompt, c.max_teacher_prompt, longest + 1, c.bucket_growth)
        ctx = dataclasses.replace(ctx, mesh=ctx.mesh or shd.single_device_mesh(), lengths=lengths,
                                  source={"general": rows})
        self._nll = HeldoutNLL(name, ctx, split="general", examples=len(rows), context="student")
        self.name, self.every, self.model = name, every, ctx.model

    def __call__(self, params=None, teacher_params=None) -> dict:
        """params None: the model's own (how the continual runner evaluates each stage's export)."""
        return self._nll(self.model.params if params is None else params)


def _write_base_answers(model, prompts, path: str, max_new_tokens: int, max_prompt: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "answers.jsonl")
        evaluate(model, _rows(prompts), "exact_match", max_new_tokens=max_new_tokens, max_prompt=max_prompt,
                 batch_size=8, out_jsonl=out)
        answers = [json.loads(line)["completion"] for line in open(out)]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".partial", "w") as f:
        for row in _rows(prompts, answers):
            f.write(json.dumps(row) + "\n")
    os.replace(path + ".partial", path)
