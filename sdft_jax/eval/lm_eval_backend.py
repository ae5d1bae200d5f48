"""lm-evaluation-harness backend: `--model sdft_jax --model_args path=HF_FOLDER[,dtype=...,batch_size=...]`.

    python -m sdft_jax.eval.lm_eval_backend --model sdft_jax --model_args path=runs/x/export \
        --tasks hellaswag,mmlu [--include_path DIR] ...

(lm_eval's own CLI does not discover third-party models; this module registers ours, then runs
lm_eval's CLI with the same arguments.) Requires `pip install lm_eval==0.4.13`.
"""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
from lm_eval.__main__ import cli_evaluate
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from sdft_jax.core.sampler import SamplingConfig, make_generate
from sdft_jax.data.buckets import buckets_up_to, pad_to_bucket
from sdft_jax.eval.likelihood import LikelihoodScorer
from sdft_jax.model import load_pretrained
from sdft_jax.model.stop_tokens import stop_token_ids


@register_model("sdft_jax")
class SDFTJaxLM(LM):
    def __init__(self, path: str, dtype: str = "float32", batch_size: int = 8, max_length: int = 2048,
                 max_gen_toks: int = 256, **_unused):
        super().__init__()
        self.model = load_pretrained(path, dtype=dtype)
        self.scorer = LikelihoodScorer(self.model, batch_size=int(batch_size), max_length=int(max_length))
        self.batch_size, self.max_gen_toks = int(batch_size), int(max_gen_toks)

    def loglikelihood(self, requests):
        return self.scorer.loglikelihood([r.args for r in requests])

    def loglikelihood_rolling(self, requests):
        return self.scorer.loglikelihood_rolling([r.args[0] for r in requests])

    def generate_until(self, requests):
        tok = self.model.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        stops = stop_token_ids(self.model.path or "", tok)
        outputs = []
        compiled = {}
        for req in requests:
            context, kwargs = req.args
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            n = int(kwargs.get("max_gen_toks", self.max_gen_toks))
            temperature = float(kwargs.get("temperature", 0.0)) if kwargs.get("do_sample") else 0.0
            key = (n, temperature)
            if key not in compiled:
                compiled[key] = make_generate(self.model.graphdef, self.model.config, SamplingConfig(
                    max_new_tokens=n, temperature=temperature, stop_ids=stops, pad_id=pad))
            ids = tok(context, add_special_tokens=False).input_ids[-(self.scorer.max_length - n):]
            tokens, mask = pad_to_bucket([ids], buckets_up_to(self.scorer.max_length - n, smallest=32), pad)
            r = compiled[key](self.model.params, jnp.asarray(tokens), jnp.asarray(mask), jax.random.key(0))
            out_ids = [int(t) for t in np.asarray(r.tokens)[0, : int(r.lengths[0])] if int(t) not in stops]
            text = tok.decode(out_ids, skip_special_tokens=True)
            for stop in until:
                text = text.split(stop)[0]
            outputs.append(text)
        return outputs


def main() -> None:
    cli_evaluate()


if __name__ == "__main__":
    sys.exit(main())
