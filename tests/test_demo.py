"""The built-in demo: the generated world, and a reduced end-to-end run through the real CLI
(pretraining with our SFT step, teacher ceiling, continual SDFT and SFT, report), run twice for
determinism."""
import collections
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sdft_jax.experiments.demo import world
from sdft_jax.eval.scorers import score_completion

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_rules():
    rule = world.Rule("QX", "bcdefa")
    assert rule.apply("abf") == "bca"
    tasks = world.new_tasks(seed=3, count=3)
    assert len({t.name for t in tasks}) == 3 and all(sorted(t.table) == list(world.ALPHABET) for t in tasks)
    assert not set(t.name for t in tasks) & set(world.PRIOR_SKILLS)
    assert [t.table for t in world.new_tasks(seed=3, count=3)] == [t.table for t in tasks]
    assert [t.table for t in world.new_tasks(seed=4, count=3)] != [t.table for t in tasks]


def test_task_folders_have_disjoint_words_and_score_their_own_answers(tmp_path):
    tasks = world.write_task_folders(str(tmp_path), seed=0, count=2, train=50, test=20)
    for rule, folder in tasks:
        train = [json.loads(line) for line in open(os.path.join(folder, "train.jsonl"))]
        test = [json.loads(line) for line in open(os.path.join(folder, "test.jsonl"))]
        assert len(train) == 50 and len(test) == 20
        words = lambda rows: {r["prompt"].split(":", 1)[1] for r in rows}  # noqa: E731
        assert not words(train) & words(test)
        for r in test:  # the demonstration scores 1; the word itself (unchanged) scores 0 unless fixed
            assert r["answer"] == rule.apply(r["prompt"].split(":", 1)[1])
            assert score_completion("exact_match", r["demonstration"], r) == 1.0
            assert score_completion("exact_match", r["demonstration"][::-1] + "x", r) == 0.0
    for skill, fn in world.PRIOR_SKILLS.items():
        rows = [json.loads(line) for line in open(tmp_path / f"prior_{skill}" / "test.jsonl")]
        assert all(fn(r["prompt"].split(":", 1)[1]) == r["answer"] for r in rows)


def test_pretraining_mix_and_contexts():
    rows = world.pretraining_rows(3000, seed=0)
    assert rows == world.pretraining_rows(3000, seed=0)
    in_context = [r for r in rows if "|" in r["prompt"]]
    prior = [r for r in rows if r["prompt"].split(":")[0] in world.PRIOR_SKILLS]
    assert abs(len(in_context) / 3000 - world.PRETRAINING_MIX["in_context"]) < 0.03
    random_rules = [r for r in in_context if r["prompt"].split(":")[0] not in world.PRIOR_SKILLS]
    assert abs(len(random_rules) / len(in_context) - (1 - world.IN_CONTEXT_PRIOR_SKILL)) < 0.04
    assert len({r["prompt"].split(":")[0] for r in random_rules}) > 300  # many rules, not a few
    for r in in_context:  # the teacher's format: question | demonstration, answered by the demonstration
        assert r["prompt"].endswith("|" + r["demonstration"])
    for r in prior:
        skill, word = r["prompt"].split("|")[0].split(":")
        assert world.PRIOR_SKILLS[skill](word) == r["answer"]
    tok = world.tokenizer()
    from sdft_jax.data.prompts import student_context, teacher_context
    ex = {"prompt": "QX:abc", "demonstration": "bcd", "system": ""}
    assert student_context(tok, ex) == "<|im_start|>u:QX:abc<|im_end|><|im_start|>a:"
    assert teacher_context(tok, ex, world.TEACHER_TEMPLATE) == "<|im_start|>u:QX:abc|bcd<|im_end|><|im_start|>a:"


def test_style_world_is_deterministic_and_its_demonstrations_use_the_expert_form(tmp_path):
    a = world.write_task_folders(str(tmp_path / "a"), seed=0, count=2, train=30, test=10, world_name="style")
    b = world.write_task_folders(str(tmp_path / "b"), seed=0, count=2, train=30, test=10, world_name="style")
    plain = world.write_task_folders(str(tmp_path / "p"), seed=0, count=2, train=30, test=10)
    for (rule, fa), (_, fb), (_, fp) in zip(a, b, plain):
        for split in ("train", "test"):
            ra, rb, rp = (json_rows(os.path.join(f, f"{split}.jsonl")) for f in (fa, fb, fp))
            assert ra == rb
            # The same words and content as the substitution world; only the demonstration's form differs.
            assert [(r["prompt"], r["answer"]) for r in ra] == [(r["prompt"], r["answer"]) for r in rp]
            for r in ra:
                assert r["demonstration"] == "-".join(rule.apply(r["prompt"].split(":")[1]))
                assert score_completion("letters", r["demonstration"], r) == 1.0
            # The @plain arms' copy: the same rows, demonstrations in the base's own form.
            rq = json_rows(os.path.join(world.plain_form_folder(fa), f"{split}.jsonl"))
            assert rq == [{**r, "demonstration": r["answer"]} for r in ra]
        assert not os.path.exists(world.plain_form_folder(fp))  # the substitution world's demos are plain already
    rows = world.pretraining_rows(3000, seed=0, world_name="style")
    assert rows == world.pretraining_rows(3000, seed=0, world_name="style")
    forms = collections.Counter()
    for r in rows:  # targets are always plain; in-context examples come in every form
        assert r["demonstration"] == r["answer"] and r["answer"].isalpha() and r["answer"].islower()
        if "|" in r["prompt"]:
            example = r["prompt"].split("|")[1]
            forms.update(name for name, fn in world.STYLES.items() if fn(r["answer"]) == example
                         and (name == "plain" or example != r["answer"]))
            assert score_completion("letters", example, r) == 1.0
    assert set(forms) == set(world.STYLES) and min(forms.values()) > 200, forms


@pytest.mark.parametrize("completion,right", [
    ("feac", True), ("FEAC", True), ("f-e-a-c", True), ("f.e.a.c", True), ("f e a c", True), (" Fe-ac ", True),
    ("feab", False), ("fea", False), ("feacc", False), ("f-e-a-c-x", False), ("f_e_a_c", False), ("", False),
    ("caef", False)])
def test_letters_scorer_accepts_every_form_of_the_right_letters_only(completion, right):
    assert score_completion("letters", completion, {"answer": "feac"}) == float(right)


def json_rows(path):
    return [json.loads(line) for line in open(path)]


def _run_demo(workdir, cache):
    env = {**os.environ, "SDFT_JAX_CACHE": str(cache), "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "sdft_jax.main", "--config=configs/demo.py:size=small",
                           f"--workdir={workdir}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _learned_own_task(m: dict, student: dict) -> float:
    """The largest gain over the base's student accuracy on a task right after its own stage."""
    return max(m["matrix"][i][m["columns"].index(st["task"])] - student[st["task"]]
               for i, st in enumerate(m["summary"]["stages"]))


@pytest.mark.slow
def test_reduced_demo_end_to_end_and_resumable(tmp_path):
    out = _run_demo(tmp_path / "a", tmp_path / "cache")
    assert "pretraining" in out
    results = json.load(open(tmp_path / "a" / "results.json"))
    ceiling = results["teacher_ceiling"]
    print("\nreduced demo:", json.dumps({"ceiling": ceiling, **{m: results["methods"][m]["summary"]
                                                              for m in ("sdft", "sft")}}, indent=1))
    # The pretrained base has its prior skills (exact match on 5-letter strings; chance is ~0).
    assert np.mean(list(ceiling["prior"].values())) > 0.3
    # The teacher (demonstration in context) beats the student on the new tasks before training.
    assert np.mean(list(ceiling["teacher"].values())) > np.mean(list(ceiling["student"].values())) + 0.3
    for method in ("sdft", "sft"):  # each method learns a new task on its own stage (a reduced run: 60 steps)
        kl = results["methods"][method]["kl_to_base_after_stage"]  # the trained models moved from the base
        assert len(kl) == 2 and all(np.isfinite(k) and k > 0 for k in kl), (method, kl)
        assert _learned_own_task(results["methods"][method], ceiling["student"]) >= 0.1, method
    for name in ("report.md", "demo.png", "timing.json", "sdft/continual.png", "sft/matrix.csv"):
        assert (tmp_path / "a" / name).stat().st_size > 0, name
    report = (tmp_path / "a" / "report.md").read_text()
    assert "Teacher ceiling" in report and "SDFT" in report and "SFT" in report and "KL(fine-tuned" in report
    # The headline (experiments/demo/headline.py, tested on known curves in test_demo_study.py): printed
    # and at the top of the report, a row per arm.
    from sdft_jax.experiments.demo.headline import headline
    lines = headline(results)
    assert all(f"[demo] {line}" in out for line in lines)
    assert "\n".join(lines) in report and sum(line.split()[0] in ("SDFT", "SFT") for line in lines if line.strip()) == 2
    # A rerun into the same workdir resumes: every stage is kept, and the results are the same. (Whole-run
    # determinism is checked where it is cheap: resume tests, test_pretraining_is_deterministic.)
    out2 = _run_demo(tmp_path / "a", tmp_path / "cache")
    assert "cached" in out2
    again = json.load(open(tmp_path / "a" / "results.json"))
    assert again["methods"] == results["methods"] and again["teacher_ceiling"] == ceiling
    from sdft_jax.experiments.demo.aggregate import table
    assert "over 1 seeds (0)" in table([str(tmp_path / "a")])
    # The curves (size=small: demo.curve_every=30): per stage the start and steps 30, 60, read by the study's report.
    from sdft_jax.experiments.demo.study_report import arm_record
    for method in ("sdft", "sft"):
        m = results["methods"][method]
        assert [[r["step"] for r in c] for c in m["curves"]] == [[0, 30, 60], [0, 30, 60]]
        assert m["curves"][1][0] == {"step": 0, **dict(zip(m["columns"], m["matrix"][0]))}  # stage 2 starts from stage 1's row
        rec = arm_record({**results, "eval_examples": 32}, method)
        assert rec["curves"][0]["kl"][0] == 0.0 and all(k > 0 for k in rec["curves"][0]["kl"][1:])
        assert rec["stage1_task1"] == m["matrix"][0][0] and 0 <= rec["cut_answers"] <= rec["scored_answers"]
        assert rec["teacher_task2_base"] == m["curves"][0][0][f"teacher:{m['columns'][1]}"]


def test_pretraining_is_deterministic(tmp_path, monkeypatch):
    """Two pretrainings from scratch with the same seed give bitwise-equal weights."""
    import ml_collections
    from configs.demo import world_run_defaults
    from sdft_jax.experiments.demo import pretrain
    pre = ml_collections.ConfigDict(dict(seed=1, steps=3, batch=8, lr=1e-3, hidden=32, layers=1, heads=2,
                                         kv_heads=1, intermediate=64))
    paths = []
    for name in ("x", "y"):
        monkeypatch.setenv("SDFT_JAX_CACHE", str(tmp_path / name))
        paths.append(pretrain.pretrained_base(pre, world_run_defaults(), "style", say=lambda m: None))
    from safetensors.numpy import load_file
    a, b = (load_file(os.path.join(p, "model.safetensors")) for p in paths)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("key,value,message", [
    ("methods", ("sdft", "dpo"), r"demo \(dpo stage settings\): method='dpo'; expected one of sdft, sft, offline, "
                                 r"rejection"),
    ("methods", ("sft:base",), r"demo \(sft:base stage settings\): teacher.anchor: base \(or teacher.init_path\) needs a method "
                                  r"with a teacher; method=sft has none"),
    ("teacher", "frozn", r"demo \(sdft stage settings\): teacher.kind='frozn'"),
    ("lr", -1.0, r"optim.lr: must be > 0"),
    ("train_rows", 4, r"demo.train_rows: 4 rows cannot fill a batch"),
    ("steps_per_task", 0, r"demo.steps_per_task: must be >= 1"),
])
def test_bad_demo_settings_fail_before_pretraining(key, value, message):
    import importlib.util
    spec = importlib.util.spec_from_file_location("demo_config", os.path.join(REPO, "configs", "demo.py"))
    demo_config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_config)
    from sdft_jax.experiments.demo.runner import validate
    from sdft_jax.resolve import ConfigError
    c = demo_config.get_config()
    c.demo[key] = value
    with pytest.raises(ConfigError, match=message):
        validate(c)


def test_every_arm_of_the_demo_resolves_with_its_method_anchor_and_scorer():
    """configs/demo.py:methods=... : each arm is a continual run of its method; `:base` anchors its teacher."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("demo_config", os.path.join(REPO, "configs", "demo.py"))
    demo_config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_config)
    from sdft_jax.experiments.demo.runner import arm_folder, continual_config, validate
    c = demo_config.get_config("methods=sdft/sdft:base/sft/sft@plain/offline/rejection")
    c.demo.curve_every = 20
    validate(c)
    tasks = [(world.new_tasks(0, 1)[0], "/w/task_A")]
    got = {arm: continual_config(c, arm, tasks, "/w", "/base") for arm in c.demo.methods}
    assert {a: (g.method, g.teacher.anchor) for a, g in got.items()} == {
        "sdft": ("sdft", "stage"), "sdft:base": ("sdft", "base"), "sft": ("sft", "stage"),
        "sft@plain": ("sft", "stage"), "offline": ("offline", "stage"), "rejection": ("rejection", "stage")}
    assert got["rejection"].data.scorer == "letters" and arm_folder("sdft:base") == "sdft_base"
    # @plain trains on the plain copy and is scored on the expert's rows, like every arm.
    assert [(g.stages[0].path, g.stages[0].eval_path) for g in (got["sft"], got["sft@plain"])] == [
        ("/w/task_A", "/w/task_A"), ("/w/task_A_plain", "/w/task_A")]
    assert arm_folder("sft@plain") == "sft_plain"
    # The curves: evaluators inside the stages, the teacher on every task, KL against the demo's base.
    g = got["sdft"]
    assert g.eval.every == 20 and g.eval.teacher_on_tasks and g.eval.count_cut
    assert g.eval.max_new_tokens == world.EVAL_MAX_NEW_TOKENS
    assert g.stages[0].evals.kl.base_path == "/base" and g.stages[0].evals.kl.type == "kl_to_base"


def test_evaluation_length_covers_every_correct_form():
    """No right answer is scored wrong for being cut: every prior skill and task answer of the
    longest word, in every form the letters scorer accepts, ends before world.EVAL_MAX_NEW_TOKENS."""
    tok = world.tokenizer()
    word = world.ALPHABET[:world.MAX_LEN]
    answers = [fn(word) for fn in world.PRIOR_SKILLS.values()] + [world.new_tasks(0, 1)[0].apply(word)]
    longest = max(len(tok(world.styled(a, s), add_special_tokens=False).input_ids) + 1  # + end of turn
                  for a in answers for s in world.STYLES)
    assert longest == world.longest_correct_tokens() == 20 <= world.EVAL_MAX_NEW_TOKENS


@pytest.mark.parametrize("arm, message", [("sft@dash", "METHOD\\[:base\\]\\[@plain\\]"),
                                          ("sdft:first", "METHOD"), ("sft@plain", "style world only")])
def test_bad_arms_are_config_errors(arm, message):
    import importlib.util
    spec = importlib.util.spec_from_file_location("demo_config", os.path.join(REPO, "configs", "demo.py"))
    demo_config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_config)
    from sdft_jax.experiments.demo.runner import validate
    from sdft_jax.resolve import ConfigError
    c = demo_config.get_config(f"methods={arm}" + (",world=substitution" if arm == "sft@plain" else ""))
    with pytest.raises(ConfigError, match=message):
        validate(c)
