"""Log-likelihood scoring with our model: continuation log-probs (lm-eval's `loglikelihood`),
rolling document log-probs, and multiple-choice accuracy (acc and length-normalized acc_norm)."""
from __future__ import annotations

import json
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sdft_jax.data.buckets import buckets_up_to


class LikelihoodScorer:
    def __init__(self, model, batch_size: int = 8, max_length: int = 2048):
        self.model, self.tok, self.batch_size, self.max_length = model, model.tokenizer, batch_size, max_length
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        prefix = self.tok.bos_token_id if self.tok.bos_token_id is not None else self.tok.eos_token_id
        self.prefix_id = prefix if prefix is not None else self.pad
        graphdef = model.graphdef

        @jax.jit
        def token_logprobs(params, tokens, mask):
            logits = nnx.merge(graphdef, params)(tokens, None, mask)[:, :-1]
            lp = jax.nn.log_softmax(logits, axis=-1)
            targets = tokens[:, 1:]
            picked = jnp.take_along_axis(lp, targets[..., None], axis=-1)[..., 0]
            return picked, jnp.argmax(logits, axis=-1) == targets

        self._token_logprobs = token_logprobs

    def _encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids

    def _score(self, sequences: list[list[int]], n_scored: list[int]) -> list[tuple[float, bool]]:
        """Sum of log p over the last n_scored[i] tokens of each sequence, and whether all were greedy."""
        out: list[tuple[float, bool]] = []
        buckets = buckets_up_to(self.max_length, smallest=32)
        for lo in range(0, len(sequences), self.batch_size):
            chunk = sequences[lo: lo + self.batch_size]
            length = next(b for b in buckets if b >= max(len(s) for s in chunk))
            tokens = np.full((self.batch_size, length), self.pad, np.int32)
            mask = np.zeros_like(tokens)
            for i, s in enumerate(chunk):  # left padding
                tokens[i, length - len(s):], mask[i, length - len(s):] = s, 1
            lp, greedy = (np.asarray(x) for x in self._token_logprobs(self.model.params, tokens, mask))
            for i, n in enumerate(n_scored[lo: lo + self.batch_size]):
                out.append((float(lp[i, -n:].sum()), bool(greedy[i, -n:].all())))
        return out

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        sequences, scored = [], []
        for context, continuation in pairs:
            whole = self._encode(context + continuation)
            ctx = self._encode(context) if context else []
            cont = whole[len(ctx):]
            if not ctx:
                whole = [self.prefix_id] + whole
            if not cont:
                raise ValueError(f"empty continuation after tokenization for context {context[:50]!r}")
            whole = whole[-self.max_length:]
            sequences.append(whole)
            scored.append(min(len(cont), len(whole) - 1))
        return self._score(sequences, scored)

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        """log p(text | prefix token), in windows of max_length with the longest possible context."""
        totals = []
        for text in texts:
            ids = [self.prefix_id] + self._encode(text)
            windows, scored, start = [], [], 1
            while start < len(ids):
                end = min(start + self.max_length - 1, len(ids))
                ctx_start = max(0, end - self.max_length)
                windows.append(ids[ctx_start:end])
                scored.append(end - start)
                start = end
            totals.append(sum(lp for lp, _ in self._score(windows, scored)))
        return totals

    def multiple_choice(self, rows: Sequence[dict]) -> dict[str, float]:
        """rows: {"query", "choices": [...], "gold": index}. acc_norm divides by the choice's length in
        characters (as lm-evaluation-harness does)."""
        pairs = [(r["query"], c) for r in rows for c in r["choices"]]
        scores = [lp for lp, _ in self.loglikelihood(pairs)]
        acc = acc_norm = 0
        i = 0
        for r in rows:
            k = len(r["choices"])
            s = np.asarray(scores[i: i + k])
            lengths = np.asarray([max(len(c), 1) for c in r["choices"]])
            acc += int(np.argmax(s) == r["gold"])
            acc_norm += int(np.argmax(s / lengths) == r["gold"])
            i += k
        return {"acc": acc / len(rows), "acc_norm": acc_norm / len(rows), "n": len(rows)}


def read_mc_jsonl(path: str) -> list[dict]:
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                row = json.loads(line)
                for field in ("query", "choices", "gold"):
                    if field not in row:
                        raise ValueError(f"{path}:{number}: missing field '{field}'")
                rows.append(row)
    return rows
