"""Contexts, truncation policy, batching, resume and per-process slices."""
import numpy as np
import pytest

from sdft_jax.data import Batcher, Lengths, student_context, teacher_context, tokenize_all
from tests import hf_fixtures

QWEN_SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


@pytest.fixture(scope="module")
def tok():
    return hf_fixtures.tokenizer()


def _ex(i, prompt="What is 2+2?", demo="It is 4.", system=""):
    return {"task": "t", "id": f"t/{i}", "system": system, "prompt": prompt, "demonstration": demo,
            "answer": "", "raw": "{}"}


def test_context_strings_exactly_as_the_spec(tok):
    ex = _ex(0, "Q?", "D.")
    assert student_context(tok, ex) == QWEN_SYSTEM + "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n"
    assert teacher_context(tok, ex) == (
        QWEN_SYSTEM + "<|im_start|>user\nQ?\n\nThis is an example for a response to the question:\nD.\n\n"
        "Now answer with a response of your own, including the thinking process.<|im_end|>\n"
        "<|im_start|>assistant\n")
    with_system = _ex(0, "Q?", "D {json}.", system="Use <answer>.")
    assert student_context(tok, with_system).startswith("<|im_start|>system\nUse <answer>.<|im_end|>\n<|im_start|>user\nQ?")
    assert teacher_context(tok, with_system).startswith(
        "<|im_start|>system\nUse <answer>.<|im_end|>\n<|im_start|>user\nQ?\n\nThis is an example")
    assert "D {json}." in teacher_context(tok, with_system)  # braces survive


def test_truncation_cuts_the_demonstration_keeps_the_question_and_counts(tok):
    question = "Which planet is largest? " * 3
    # Byte-level tokenizer: one token per character (+ the chat/template overhead, ~85 / ~110).
    examples = [_ex(0, question, "short"), _ex(1, question, "x" * 400), _ex(2, "q" * 300, "d"),
                _ex(3, "q" * 180, "a long demonstration " * 10)]
    lengths = Lengths(max_student_prompt=300, max_teacher_prompt=330, max_completion=64)
    out, stats = tokenize_all(examples, tok, lengths)
    assert [t.index for t in out] == [0, 1]
    assert stats.kept == 2 and stats.total == 4 and stats.teacher_demo_cut == 1
    assert stats.skipped == {"student_prompt_too_long": 1, "teacher_context_too_long": 1}
    assert stats.sft_target_cut == 1  # 400-char demo > 64 target tokens
    cut = tok.decode(out[1].teacher)
    assert len(out[1].teacher) <= 330 and question in cut and "xxxx" in cut
    assert "Now answer with a response of your own" in cut  # template tail survives the cut
    assert out[1].target[-1] == tok.convert_tokens_to_ids("<|im_end|>") or len(out[1].target) == 64
    assert "skipped: student_prompt_too_long=1, teacher_context_too_long=1" in stats.summary()


def test_knowledge_sft_target_is_the_answer_while_the_teacher_sees_article_and_answer(tok):
    """The paper's SFT baseline trains on question-answer pairs; the teacher gets "text and answers"."""
    ex = {**_ex(0, "Who founded Velmora Works?", "Velmora Works was founded by Ada Quell.\n\nAnswer: Ada Quell"),
          "task": "knowledge", "answer": "Ada Quell"}
    (out,), _ = tokenize_all([ex], tok, Lengths(256, 512, 64))
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    assert out.target == tok.encode("Ada Quell", add_special_tokens=False) + [eot]
    assert "was founded by Ada Quell.\n\nAnswer: Ada Quell" in tok.decode(out.teacher)
    generic, = tokenize_all([_ex(1, "Q?", "D.")], tok, Lengths(256, 512, 64))[0]
    assert generic.target == tok.encode("D.", add_special_tokens=False) + [eot]


def _batcher(tok, n=23, **kw):
    examples, _ = tokenize_all([_ex(i, f"question {i}" * (1 + i % 3)) for i in range(n)], tok,
                               Lengths(256, 256, 32))
    return Batcher(examples, global_batch=4, lengths=Lengths(256, 256, 32), pad_id=tok.pad_token_id,
                   seed=7, student_buckets=(32, 64, 128, 256), teacher_buckets=(128, 256), **kw)


def test_batches_are_left_padded_into_buckets(tok):
    b = next(_batcher(tok))
    assert b["student_prompt"].shape[1] in (32, 64, 128, 256) and b["teacher_prompt"].shape[1] in (128, 256)
    assert (b["student_prompt_mask"][:, -1] == 1).all()  # left padding: last column is real
    assert (b["target_mask"][:, 0] == 1).all()  # right padding for the target


def test_resume_gives_the_identical_remaining_stream(tok):
    a = _batcher(tok)
    for _ in range(7):  # crosses an epoch boundary (5 batches per epoch)
        next(a)
    state = a.get_state()
    rest_a = [next(a)["index"].tolist() for _ in range(6)]
    b = _batcher(tok)
    b.set_state(state)
    assert [next(b)["index"].tolist() for _ in range(6)] == rest_a
    full = _batcher(tok)
    epoch0 = [i for _ in range(5) for i in next(full)["index"].tolist()]
    assert len(set(epoch0)) == 20  # 23 examples, batch 4: one epoch sees 20 distinct, no repeats
    epoch1 = [i for _ in range(5) for i in next(full)["index"].tolist()]
    assert epoch1 != epoch0  # reshuffled per epoch


def test_two_processes_get_disjoint_slices_covering_the_global_batch(tok):
    p0, p1, whole = _batcher(tok, process_index=0, process_count=2), _batcher(tok, process_index=1, process_count=2), _batcher(tok)
    for _ in range(6):
        a, b, w = next(p0), next(p1), next(whole)
        assert set(a["index"]).isdisjoint(b["index"])
        assert a["index"].tolist() + b["index"].tolist() == w["index"].tolist()
        assert a["student_prompt"].shape == b["student_prompt"].shape  # same bucket on every process
        np.testing.assert_array_equal(np.concatenate([a["teacher_prompt"], b["teacher_prompt"]]), w["teacher_prompt"])
