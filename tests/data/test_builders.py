"""TFDS builders over the real files in ../shared/data and over rows written in the test."""
import glob
import json
import os
import subprocess
import sys

import pytest

from sdft_jax.data import DataError, prepare, read_task
from sdft_jax.data.records import react_demonstration
from tests.conftest import shared_data_dir


def _write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return str(path)


def test_tooluse_real_files(tmp_path):
    root = os.path.join(shared_data_dir(), "tooluse")
    source = prepare("tooluse", root, str(tmp_path))
    eval_rows = [json.loads(l) for l in open(os.path.join(root, "sdft_tooluse_eval.jsonl"))]
    alpaca = sum(len(r["Instructions"]) for f in ("toolalpaca_eval_real.json", "toolalpaca_eval_simulated.json")
                 for r in json.load(open(os.path.join(root, f))))
    assert len(source["test"]) == len(eval_rows) + alpaca
    by_id = {ex["id"]: ex for ex in source["test"]}
    ex = by_id["tooluse/sdft_tooluse_eval.jsonl/1"]
    assert ex["prompt"] == eval_rows[0]["prompt"]
    assert ex["demonstration"] == react_demonstration(eval_rows[0]["golden_answer"], "", 1)
    assert ex["demonstration"].startswith(f"Action: {eval_rows[0]['golden_answer'][0]['Action']}\nAction Input: ")
    assert json.loads(ex["raw"]) == eval_rows[0]


def test_science_release_and_raw_sciknoweval(tmp_path):
    root = os.path.join(shared_data_dir(), "science")
    release = prepare("science", os.path.join(root, "sdft_science_eval.jsonl"), str(tmp_path))
    rows = [json.loads(l) for l in open(os.path.join(root, "sdft_science_eval.jsonl"))]
    assert len(release["test"]) == len(rows) == 507
    ex = {e["id"]: e for e in release["test"]}["science/sdft_science_eval.jsonl/1"]
    assert ex["system"] == rows[0]["prompt"][0]["content"] and ex["prompt"] == rows[0]["prompt"][1]["content"]
    assert ex["answer"] == rows[0]["answer"] and ex["demonstration"] == f"<answer>\n{rows[0]['answer']}\n</answer>"

    raw_dir = os.path.join(root, "sciknoweval_chemistry_L3")
    raw = prepare("science", raw_dir, str(tmp_path))
    all_rows = [json.loads(l) for f in sorted(os.listdir(raw_dir)) for l in open(os.path.join(raw_dir, f))]
    mcq = [r for r in all_rows if r["type"].startswith("mcq") and r["answerKey"]]
    sizes = {k: len(v) for k, v in raw.items()}
    assert sum(sizes.values()) == len(mcq)
    for split, frac in (("train", 0.75), ("validation", 0.05), ("test", 0.20)):
        assert abs(sizes[split] / len(mcq) - frac) < 0.03, sizes
    again = prepare("science", raw_dir, str(tmp_path / "again"))
    assert sorted(e["id"] for e in again["test"]) == sorted(e["id"] for e in raw["test"])  # deterministic


def test_medical_real_file(tmp_path):
    path = os.path.join(shared_data_dir(), "medical", "huatuogpt_o1_demo.json")
    source = prepare("medical", path, str(tmp_path))
    rows = json.load(open(path))
    assert sum(len(s) for s in source.values()) == len(rows)
    ex = {e["id"]: e for s in source.values() for e in s}["medical/huatuogpt_o1_demo.json/0"]
    assert ex["demonstration"] == rows[0]["Complex_CoT"] + "\n\n" + rows[0]["Response"]
    assert ex["answer"] == rows[0]["Ground-True Answer"] and ex["prompt"] == rows[0]["Question"]


def test_knowledge_and_generic_rows_written_here(tmp_path):
    know = _write_jsonl(tmp_path / "wiki_train.jsonl", [
        {"title": "Flood of 2025", "article": "A flood hit X in May 2025.", "question": "When?", "answer": "May 2025"}])
    ex = prepare("knowledge", know, str(tmp_path / "k"))["train"][0]
    assert ex["demonstration"] == "Flood of 2025\n\nA flood hit X in May 2025.\n\nAnswer: May 2025"
    demo = _write_jsonl(tmp_path / "mine.jsonl", [
        {"prompt": "2+2?", "demonstration": "4", "answer": 4},
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
         "demonstration": "Hello"}])
    rows = read_task("demonstrations", demo)
    assert [r["prompt"] for r in rows] == ["2+2?", "Hi"] and rows[1]["system"] == "Be brief."
    assert rows[0]["answer"] == "4" and rows[0]["id"] == "demonstrations/mine.jsonl/1"


@pytest.mark.parametrize("rows,message", [
    ([{"prompt": "a", "demonstration": "b"}, {"prompt": "c"}], r"mine.jsonl:2: missing field 'demonstration'"),
    ([{"prompt": 5, "demonstration": "b"}], r"mine.jsonl:1: field 'prompt' must be str or list, got int"),
    ([{"prompt": [{"role": "system", "content": "s"}], "demonstration": "b"}], r"mine.jsonl:1: field 'prompt' has no user message"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, rows, message):
    path = _write_jsonl(tmp_path / "mine.jsonl", rows)
    with pytest.raises(DataError, match=message):
        read_task("demonstrations", path)


def test_invalid_json_line_and_missing_file(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "demonstration": "b"}\n{oops\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        read_task("demonstrations", str(path))
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        prepare("demonstrations", str(tmp_path / "nope.jsonl"), str(tmp_path))


def test_importing_data_does_not_import_tensorflow():
    code = "import sys, sdft_jax.data; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_edited_data_file_is_prepared_again(tmp_path, capsys):
    """The preparation was cached by path only: an edited file was silently ignored."""
    rows = [{"prompt": f"p{i}", "demonstration": f"d{i}"} for i in range(3)]
    path = _write_jsonl(tmp_path / "demo.jsonl", rows)
    cache = str(tmp_path / "tfds")
    assert len(prepare("demonstrations", path, cache)["train"]) == 3
    assert len(prepare("demonstrations", path, cache)["train"]) == 3  # unchanged: reused
    assert "changed since" not in capsys.readouterr().out
    _write_jsonl(tmp_path / "demo.jsonl", rows + [{"prompt": "p3", "demonstration": "d3"}])
    assert len(prepare("demonstrations", path, cache)["train"]) == 4
    assert f"{path} changed since it was last prepared" in capsys.readouterr().out


def test_non_utf8_bytes_and_empty_file_name_the_file(tmp_path):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"prompt": "a", "demonstration": "b"}\n{"prompt": "caf\xe9", "demonstration": "b"}\n')
    with pytest.raises(DataError, match=r"latin1.jsonl:2: not UTF-8"):
        read_task("demonstrations", str(bad))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty.jsonl: no rows \(the demonstrations data file is empty\)"):
        prepare("demonstrations", str(empty), str(tmp_path / "tfds"))


def _demos(n, start=0):
    return [{"prompt": f"p{i}", "demonstration": f"d{i}"} for i in range(start, start + n)]


def test_a_file_naming_no_split_goes_to_train_whole_and_split_words_are_whole_words(tmp_path):
    """Before: demos.jsonl (64 rows) was split 48/2/14 and trained on 48; latest_train.jsonl went to
    test ("test" in "latest"), interval.jsonl to validation ("val")."""
    for name in ("demos.jsonl", "latest_train.jsonl", "interval.jsonl"):
        path = _write_jsonl(tmp_path / name, _demos(64))
        source = prepare("demonstrations", path, str(tmp_path / "tfds"))
        assert {k: len(v) for k, v in source.items()} == {"train": 64}, name
    folder = tmp_path / "folder"
    folder.mkdir()
    for name, n in (("my_val.jsonl", 3), ("contest_eval.jsonl", 4), ("latest.jsonl", 5)):
        _write_jsonl(folder / name, _demos(n))
    (folder / "intervals-test1.json").write_text(json.dumps(_demos(6)))
    source = prepare("demonstrations", str(folder), str(tmp_path / "tfds"))
    assert {k: len(v) for k, v in source.items()} == {"validation": 3, "test": 4 + 6, "train": 5}


def test_same_basename_in_two_folders_keeps_both(tmp_path):
    """Before: a/train.jsonl and b/train.jsonl gave the same example ids; TFDS raised
    DuplicatedKeysError (a 145-line traceback ending "No module named 'tensorflow'")."""
    for sub, start in (("a", 0), ("b", 10)):
        (tmp_path / "data" / sub).mkdir(parents=True)
        _write_jsonl(tmp_path / "data" / sub / "train.jsonl", _demos(4, start))
    source = prepare("demonstrations", str(tmp_path / "data"), str(tmp_path / "tfds"))
    rows = list(source["train"])
    assert sorted(r["prompt"] for r in rows) == sorted(f"p{i}" for i in (0, 1, 2, 3, 10, 11, 12, 13))
    assert {r["id"] for r in rows} >= {"demonstrations/a/train.jsonl/1", "demonstrations/b/train.jsonl/1"}


def test_a_field_of_the_wrong_type_names_file_line_and_field(tmp_path):
    """Before: "task": 5 gave an 87-line TypeError inside TFDS."""
    path = _write_jsonl(tmp_path / "mine.jsonl", [{"prompt": "a", "demonstration": "b"},
                                                  {"prompt": "a", "demonstration": "b", "task": 5}])
    with pytest.raises(DataError, match=r"^.*mine.jsonl:2: field 'task' must be str, got int$"):
        prepare("demonstrations", path, str(tmp_path / "tfds"))


def test_empty_prompts_and_demonstrations_are_counted_skipped_and_noted(tmp_path, capsys):
    rows = _demos(3) + [{"prompt": "  \n", "demonstration": "d"}, {"prompt": "p", "demonstration": ""},
                        {"prompt": [{"role": "user", "content": " "}], "demonstration": "d"}]
    path = _write_jsonl(tmp_path / "train.jsonl", rows)
    source = prepare("demonstrations", path, str(tmp_path / "tfds"))
    assert sorted(r["prompt"] for r in source["train"]) == ["p0", "p1", "p2"]
    out = capsys.readouterr().out
    assert f"data: {path}: skipped 2 row(s) with an empty prompt (line 4, 6)" in out
    assert f"data: {path}: skipped 1 row(s) with an empty demonstration (line 5)" in out
    meta = json.load(open(glob.glob(str(tmp_path / "tfds" / "*" / "source.json"))[0]))
    assert meta["skipped"] == {"empty_prompt": 2, "empty_demonstration": 1}


def test_two_runs_sharing_a_data_dir_prepare_it_once(tmp_path):
    """Before: the second of two runs preparing the same files in one data.data_dir at once crashed
    with FileExistsError (TFDS renames its finished folder into place)."""
    path = _write_jsonl(tmp_path / "train.jsonl", _demos(3000))
    code = ("import sys; from sdft_jax.data import prepare; "
            "print(len(prepare('demonstrations', sys.argv[1], sys.argv[2])['train']))")
    procs = [subprocess.Popen([sys.executable, "-c", code, path, str(tmp_path / "tfds")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    assert [o[0].strip().splitlines()[-1] for o in outs] == ["3000", "3000"]
