"""Where a run's inputs and outputs may live: hub ids (resolved offline from a hub-layout cache built
here), file:// and remote paths, and Weights & Biases in offline mode (its run files read back)."""
import glob
import json
import os
import shutil
import struct
import subprocess
import sys

import huggingface_hub.constants
import numpy as np
import pytest
from etils import epath

from sdft_jax.runtime.cache import copy_once
from sdft_jax.model import load_pretrained
from sdft_jax.model.source import MODEL_FILES, ModelSourceError, local_folder
from sdft_jax.programs.registry import run_program
from tests.test_train import REPO, _final_params, _metrics, _tiny

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """configs/tiny.py's checkpoint laid out as the hub cache lays out `sdft/tiny` at REVISION
    (models--ORG--NAME/snapshots/REV/, refs/main), with the process offline."""
    local = _tiny().model.path
    root = tmp_path / "hub"
    snapshot = root / "models--sdft--tiny" / "snapshots" / REVISION
    shutil.copytree(local, snapshot)
    (root / "models--sdft--tiny" / "refs").mkdir()
    (root / "models--sdft--tiny" / "refs" / "main").write_text(REVISION)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return local, str(snapshot)


def test_hub_id_and_file_uris_train_and_export_what_the_local_path_does(tmp_path, hub_cache):
    local, snapshot = hub_cache
    assert local_folder("sdft/tiny") == snapshot
    assert local_folder(f"sdft/tiny@{REVISION}") == snapshot
    short = dict(steps=2, **{"checkpoint.every": 2, "eval.every": 0, "log.samples_every": 0})
    plain = str(tmp_path / "plain")
    run_program(_tiny(**short), plain)
    data = _tiny().data.path
    via_uris = tmp_path / "uris"
    run_program(_tiny(**short, **{"model.path": "sdft/tiny", "data.path": f"file://{data}"}), f"file://{via_uris}")
    assert [r["loss"] for r in _metrics(plain)] == [r["loss"] for r in _metrics(str(via_uris))]
    a, b = _final_params(plain), _final_params(str(via_uris))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    for name in os.listdir(os.path.join(plain, "export")):  # tokenizer files come from the snapshot
        assert open(os.path.join(plain, "export", name), "rb").read() == \
            open(via_uris / "export" / name, "rb").read(), name


def test_uncached_hub_id_offline_is_one_line(hub_cache):
    with pytest.raises(ModelSourceError, match="'nobody/nothing' \\(hub id\\): not in the local Hugging Face cache"):
        local_folder("nobody/nothing")
    with pytest.raises(ModelSourceError, match="no such folder"):
        local_folder("./no/such/folder")


def test_main_names_an_uncached_hub_id_in_one_line_before_compiling(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-m", "sdft_jax.main", "--config=configs/tiny.py",
                          f"--workdir={tmp_path / 'w'}", "--config.model.path=nobody/nothing@v1"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: model path 'nobody/nothing@v1' (hub id): not in the local Hugging Face cache and "
                      f"HF_HUB_OFFLINE is set (cache: {tmp_path / 'hf' / 'hub'})"], out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_remote_folders_are_copied_once_and_again_when_they_change(tmp_path, monkeypatch):
    """copy_once is what gs:// model folders and data files go through; an etils path of this disk
    stands in for the bucket (same Path API)."""
    monkeypatch.setenv("SDFT_JAX_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "bucket" / "model"
    shutil.copytree(_tiny().model.path, src)
    (src / "pytorch_model.bin").write_bytes(b"not copied")
    first = copy_once(epath.Path(src), label="gs://bucket/model", patterns=MODEL_FILES)
    assert sorted(os.listdir(first)) == sorted(f for f in os.listdir(src) if not f.endswith(".bin"))
    stamp = os.stat(first).st_mtime_ns
    assert copy_once(epath.Path(src), label="gs://bucket/model", patterns=("*.json",)) != first  # other files
    assert copy_once(epath.Path(src), label="gs://bucket/model",
                     patterns=MODEL_FILES) == first
    assert os.stat(first).st_mtime_ns == stamp  # reused, not rewritten
    cfg = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**cfg, "note": "changed"}))
    changed = copy_once(epath.Path(src), label="gs://bucket/model", patterns=MODEL_FILES)
    assert changed != first and json.load(open(os.path.join(changed, "config.json")))["note"] == "changed"
    a, b = load_pretrained(str(src), dtype="float32"), load_pretrained(first, dtype="float32")
    assert all(np.array_equal(x, y) for x, y in zip(_leaves(a.params), _leaves(b.params)))


def _leaves(tree):
    import jax
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _wandb_records(workdir):
    """(run ids, config, history steps) from the .wandb files of a workdir: LevelDB-log framed
    protobuf records (7-byte file header, 32 KiB blocks, 7-byte record headers)."""
    from wandb.proto import wandb_internal_pb2 as pb
    ids, config, steps = set(), {}, []
    for path in sorted(glob.glob(os.path.join(workdir, "wandb", "*run-*", "run-*.wandb"))):
        raw, pos, pending = open(path, "rb").read(), 7, b""
        while pos + 7 <= len(raw):
            if 32768 - pos % 32768 < 7:
                pos += 32768 - pos % 32768
                continue
            _, n, kind = struct.unpack("<IHB", raw[pos:pos + 7])
            data, pos = raw[pos + 7:pos + 7 + n], pos + 7 + n
            pending = data if kind in (1, 2) else pending + data
            if kind not in (1, 4):
                continue
            record = pb.Record()
            record.ParseFromString(pending)
            which = record.WhichOneof("record_type")
            if which == "run":
                ids.add(record.run.run_id)
                config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
            elif which == "history":
                items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item}
                steps.append((items["_step"], items.get("loss")))
    return ids, config, steps


def test_wandb_offline_logs_the_metrics_rows_and_config_and_a_resume_continues_the_run(tmp_path):
    pytest.importorskip("wandb")
    workdir = str(tmp_path / "w")
    wandb = {"log.wandb.project": "sdft-test", "log.wandb.mode": "offline"}
    short = {"checkpoint.every": 2, "eval.every": 0, "log.samples_every": 0, **wandb}
    run_program(_tiny(steps=3, **short), workdir)
    shutil.rmtree(os.path.join(workdir, "checkpoints", "3"))  # as if killed after step 3's row
    run_program(_tiny(steps=4, **short), workdir)  # resumes at step 2: step 3 again, then 4
    ids, config, steps = _wandb_records(workdir)
    rows = _metrics(workdir)
    assert len(ids) == 1 and json.load(open(os.path.join(workdir, "wandb.json")))["id"] in ids
    assert [s for s, _ in steps] == [1, 2, 3, 4]  # step 3 is not sent twice
    assert [loss for _, loss in steps] == [r["loss"] for r in rows]
    assert config["method"] == "sdft" and config["optim"]["lr"] == 1e-3 and config["steps"] == 4
    assert config["model"]["path"] == _tiny().model.path
