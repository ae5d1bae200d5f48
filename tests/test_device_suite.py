"""The device suite's dry run: every step of benchmarks/device_suite.sh at toy shapes on CPU, so the
first real run on a lent GPU does not fail on a typo."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_device_suite_dry_run(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    env.pop("XLA_FLAGS", None)  # one device, as on the GPU machine
    out = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "device_suite.sh"), "--dry_run"], env=env,
                         capture_output=True, text=True, timeout=2400)  # its steps' limits end it first
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    for name in ("platform", "parity", "tiny_main", "measure"):
        assert f"{name} rc=0" in out.stdout
    results = json.loads((tmp_path / "device_suite.json").read_text())
    phases = results["phases"]
    assert set(phases) == {"decode_b4", "decode_b2", "train_sft_seq64", "train_sdft_seq64", "ratio_sdft_step",
                           "ratio_sft_step", "ratio_fused_sdft_step", "decode_b4_whole_cache"}
    for name, row in phases.items():
        assert "error" not in row and row["seconds"] > 0, (name, row)
    assert "sdft_over_sft" in results and "fused_sdft_over_sft" in results
    table = (tmp_path / "device_suite.md").read_text()
    assert "| decode_b4 |" in table and "SDFT/SFT" in table
