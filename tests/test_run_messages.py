"""Messages around a finished LoRA run: its precision note, and `sdft_jax.generate` pointed at its
workdir or at its adapter folder (docs/RELIABILITY.md)."""
import contextlib
import io
import os
import subprocess
import sys

import pytest

from sdft_jax.model.safetensors_io import SafetensorsFolder
from sdft_jax.programs.train import run
from tests.test_train import REPO, _env, _tiny


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """configs/tiny.py (model.dtype=float32) with LoRA rank 4 and the default lora.base_dtype, 2 steps."""
    workdir = str(tmp_path_factory.mktemp("lora") / "w")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run(_tiny(steps=2, **{"model.lora.rank": 4, "eval.every": 0, "log.samples_every": 0}), workdir)
    return workdir, out.getvalue()


def test_lora_with_a_float32_model_dtype_says_once_that_the_base_is_bf16(lora_run):
    """Before: silent, and the merged export was bf16 though the config said model.dtype=float32."""
    workdir, out = lora_run
    notes = [line for line in out.splitlines() if "model.lora.base_dtype=bfloat16" in line]
    assert notes == ["[sdft_jax] note: with LoRA the frozen base is stored in model.lora.base_dtype=bfloat16, not "
                     "model.dtype=float32, so the forwards and the merged export are bfloat16 too; "
                     "model.lora.base_dtype=float32 keeps them fp32"]
    export = SafetensorsFolder(os.path.join(workdir, "export"))
    assert {str(export.dtype(k)) for k in export.keys()} == {"bfloat16"}  # what the note says


def _generate(model):
    return subprocess.run([sys.executable, "-m", "sdft_jax.generate", "--model", model, "--prompt", "Reverse abc.",
                           "--max_new_tokens", "8"], env=_env(), capture_output=True, text=True, cwd=REPO, timeout=300)


def test_generate_pointed_at_a_workdir_uses_its_export(lora_run):
    """Before: a 15-line traceback (the workdir's config.json is the run's, not a model's)."""
    workdir, _ = lora_run
    out, direct = _generate(workdir), _generate(os.path.join(workdir, "export"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"--model {workdir} is a run's workdir: using its export, {workdir}/export" in out.stderr
    assert out.stdout == direct.stdout


def test_generate_pointed_at_the_adapter_folder_is_one_line(lora_run):
    workdir, _ = lora_run
    out = _generate(os.path.join(workdir, "export_adapter"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"error: --model {workdir}/export_adapter: a LoRA adapter (PEFT format), not a model; the merged model is "
        f"{workdir}/export"]
