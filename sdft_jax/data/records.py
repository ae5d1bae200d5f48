"""Readers for the task files: each raw row becomes one normalized example dict

    {task, id, system, prompt, demonstration, answer, raw}

(`prompt` is the user message x, `demonstration` the expert response c, `raw` the source row as
JSON for the scorers). A malformed row raises `DataError` naming file, line and field.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
from typing import Callable, Iterator

Example = dict[str, str]


class DataError(ValueError):
    """A bad data row or file: the message names file, line and field."""


def _where(path: str, line: int | None) -> str:
    return f"{path}:{line}" if line is not None else path


def _field(row: dict, name: str, path: str, line: int | None, types=(str,), required=True):
    if name not in row or row[name] is None:
        if required:
            raise DataError(f"{_where(path, line)}: missing field '{name}'")
        return None
    value = row[name]
    if not isinstance(value, types):
        raise DataError(f"{_where(path, line)}: field '{name}' must be "
                        f"{' or '.join(t.__name__ for t in types)}, got {type(value).__name__}")
    return value


def read_rows(path: str) -> Iterator[tuple[int | None, dict]]:
    """(line number or None, row) from a .jsonl file or a .json list."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    if path.endswith(".jsonl"):
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(f"{path}:{number}: not UTF-8 ({e.reason} at byte {e.start} of the line)") from None
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{number}: invalid JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{number}: a row must be a JSON object")
                yield number, row
    else:
        with open(path, "rb") as f:
            data = f.read()
        try:
            rows = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            line = data[:e.start].count(b"\n") + 1
            raise DataError(f"{path}:{line}: not UTF-8 ({e.reason})") from None
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON list of rows")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise DataError(f"{path}: row {i} must be a JSON object")
            yield i, row


def _example(task, name, line, prompt, demonstration, answer="", system="", raw=None) -> Example:
    """`name`: the file as the id names it (its path below the data folder, or its basename)."""
    return {"task": task, "id": f"{task}/{name}/{line}", "system": system or "", "prompt": prompt,
            "demonstration": demonstration, "answer": answer or "",
            "raw": json.dumps(raw, ensure_ascii=False, sort_keys=True)}


def _split_chat(messages, path, line) -> tuple[str, str]:
    """[system?, user] chat messages -> (system, user text)."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{_where(path, line)}: field 'prompt' must be a string or a list of chat messages")
    system, user = "", None
    for m in messages:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(f"{_where(path, line)}: field 'prompt' has a message without role/content")
        if m["role"] == "system":
            system = m["content"]
        elif m["role"] == "user":
            user = m["content"]
    if user is None:
        raise DataError(f"{_where(path, line)}: field 'prompt' has no user message")
    return system, user


# ----------------------------------------------------------------------------- tool use
def react_demonstration(golden: list, path: str, line) -> str:
    """The golden ReAct response from [{Action, Action_Input}, ...]."""
    if not isinstance(golden, list) or not golden:
        raise DataError(f"{_where(path, line)}: field 'golden_answer' must be a non-empty list")
    steps = []
    for step in golden:
        if not isinstance(step, dict) or "Action" not in step or "Action_Input" not in step:
            raise DataError(f"{_where(path, line)}: field 'golden_answer' entries need Action and Action_Input")
        steps.append(f"Action: {step['Action']}\nAction Input: {step['Action_Input']}")
    return "\n".join(steps)


TOOLUSE_INSTRUCTIONS = (
    "Your task is to answer the user's question using available tools. \n"
    "You have access to the following tools:\nName: {name}\nDescription: {description}\n"
    "Documentation:\n{documentation}\n\nUse the following format:\n"
    "Thought: you should always think about what to do\n"
    "Action: the action to take, should be one of the tool names.\n"
    "Action Input: the input to the action, must be in JSON format. All of the action input must be "
    "realistic and from the user.\n\nBegin!\nQuestion: {instruction}")


def read_tooluse(path: str, name: str | None = None) -> Iterator[Example]:
    """SDFT release rows (`prompt`, `golden_answer` or `golden_response`) or original ToolAlpaca
    files (`Name`, `NLDocumentation`, `Instructions`, `Golden_Answers`)."""
    name = name or os.path.basename(path)
    for line, row in read_rows(path):
        if "Instructions" in row:  # original ToolAlpaca: one API, several instructions
            instructions = _field(row, "Instructions", path, line, (list,))
            answers = _field(row, "Golden_Answers", path, line, (list,))
            if len(answers) != len(instructions):
                raise DataError(f"{_where(path, line)}: field 'Golden_Answers' has {len(answers)} entries "
                                f"for {len(instructions)} Instructions")
            for j, (instruction, golden) in enumerate(zip(instructions, answers)):
                prompt = TOOLUSE_INSTRUCTIONS.format(
                    name=_field(row, "Name", path, line), description=row.get("Description", ""),
                    documentation=_field(row, "NLDocumentation", path, line), instruction=instruction)
                raw = {"instruction": instruction, "golden_answer": golden, "name": row["Name"]}
                ex = _example("tooluse", name, f"{line}.{j}", prompt, react_demonstration(golden, path, line),
                              raw=raw)
                yield ex
            continue
        prompt = _field(row, "prompt", path, line)
        if "golden_response" in row:
            response = _field(row, "golden_response", path, line, (list, str))
            demo = "\n".join(response) if isinstance(response, list) else response
        else:
            demo = react_demonstration(_field(row, "golden_answer", path, line, (list,)), path, line)
        yield _example("tooluse", name, line, prompt, demo, raw=row)


# ----------------------------------------------------------------------------- science
SCIENCE_SYSTEM = (
    "\nGiven a question and four options, please select the right answer. Respond in the following format:\n"
    "<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>\n\nFor the answer, only output the letter "
    "corresponding to the correct option (A, B, C, or D), and nothing else. Do not restate the answer text. "
    "For example, if the answer is \"A\", just output:\n<answer>\nA\n</answer>\n")


def science_answer_block(letter: str, reasoning: str | None = None) -> str:
    body = f"<answer>\n{letter}\n</answer>"
    return f"<reasoning>\n{reasoning}\n</reasoning>\n{body}" if reasoning else body


def read_science(path: str, skipped: dict | None = None, name: str | None = None) -> Iterator[Example]:
    """SDFT release rows (chat `prompt` or `messages`, `answer`, optional `output_text`) or raw
    SciKnowEval rows (`question`, `choices`, `answerKey`; non-MCQ rows are skipped and counted)."""
    name = name or os.path.basename(path)
    for line, row in read_rows(path):
        if "question" in row and "choices" in row:
            if not str(row.get("type", "mcq")).startswith("mcq") or not row.get("answerKey"):
                if skipped is not None:
                    skipped["not_mcq"] = skipped.get("not_mcq", 0) + 1
                continue
            choices = _field(row, "choices", path, line, (dict,))
            labels, texts = choices.get("label") or [], choices.get("text") or []
            if len(labels) != len(texts) or not labels:
                raise DataError(f"{_where(path, line)}: field 'choices' needs equal-length 'label' and 'text'")
            options = "\n".join(f"{l}: {t}" for l, t in zip(labels, texts))
            prompt = f"{_field(row, 'question', path, line)}\n\n{options}"
            key = _field(row, "answerKey", path, line)
            yield _example("science", name, line, prompt, science_answer_block(key), key, SCIENCE_SYSTEM, row)
            continue
        messages = row.get("messages", row.get("prompt"))
        if messages is None:
            raise DataError(f"{_where(path, line)}: missing field 'prompt' (or 'messages')")
        system, user = (("", messages) if isinstance(messages, str) else _split_chat(messages, path, line))
        answer = _field(row, "answer", path, line, required="output_text" not in row) or ""
        demo = row.get("output_text") or science_answer_block(answer)
        yield _example("science", name, line, user, demo, answer, system, row)


# ----------------------------------------------------------------------------- medical
def read_medical(path: str, name: str | None = None) -> Iterator[Example]:
    """HuatuoGPT-o1 rows: demonstration = Complex_CoT + Response; answer = Ground-True Answer."""
    name = name or os.path.basename(path)
    for line, row in read_rows(path):
        question = row.get("Question") or row.get("Open-ended Verifiable Question")
        if not isinstance(question, str) or not question:
            raise DataError(f"{_where(path, line)}: missing field 'Question'")
        cot = _field(row, "Complex_CoT", path, line)
        response = _field(row, "Response", path, line)
        answer = row.get("Ground-True Answer") or row.get("answer") or ""
        yield _example("medical", name, line, question, f"{cot}\n\n{response}", answer, raw=row)


# ----------------------------------------------------------------------------- knowledge
def read_knowledge(path: str, name: str | None = None) -> Iterator[Example]:
    """Knowledge-acquisition QA rows: `question`, `answer`, `article` (source text), optional
    `title`. Teacher context = the paper's "text and answers": article text, then the answer."""
    name = name or os.path.basename(path)
    for line, row in read_rows(path):
        question = _field(row, "question", path, line)
        answer = _field(row, "answer", path, line)
        article = _field(row, "article", path, line)
        title = row.get("title")
        text = f"{title}\n\n{article}" if title else article
        yield _example("knowledge", name, line, question, f"{text}\n\nAnswer: {answer}", answer, raw=row)


# ----------------------------------------------------------------------------- generic
def read_demonstrations(path: str, name: str | None = None) -> Iterator[Example]:
    """Generic JSONL: `prompt` (string or chat messages), `demonstration`, optional `answer`, `system`, `task`."""
    name = name or os.path.basename(path)
    for line, row in read_rows(path):
        prompt = _field(row, "prompt", path, line, (str, list))
        system, user = ("", prompt) if isinstance(prompt, str) else _split_chat(prompt, path, line)
        system = _field(row, "system", path, line, required=False) or system
        demo = _field(row, "demonstration", path, line)
        answer = _field(row, "answer", path, line, (str, int, float), required=False)
        task = _field(row, "task", path, line, required=False) or "demonstrations"
        yield _example(task, name, line, user, demo,
                       "" if answer is None else str(answer), system, row)


READERS: dict[str, Callable[..., Iterator[Example]]] = {
    "tooluse": read_tooluse, "science": read_science, "medical": read_medical,
    "knowledge": read_knowledge, "demonstrations": read_demonstrations,
}
# The field SFT trains on, where it is not the demonstration: a knowledge row's demonstration is the
# teacher's "text and answer" (article + answer), and the paper's SFT baseline trains on the
# question-answer pair, so its target is the answer.
SFT_TARGET_FIELD = {"knowledge": "answer"}


def sft_target(ex: Example) -> str:
    """The text SFT trains on for this row (the demonstration unless its task says otherwise)."""
    field = SFT_TARGET_FIELD.get(ex.get("task", ""), "demonstration")
    return ex[field] if ex.get(field) else ex["demonstration"]


def data_files(path: str) -> list[str]:
    """A file, or every .json/.jsonl file below a folder (sorted, so ids are stable)."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"data path {path!r} does not exist")
    files = sorted(glob.glob(os.path.join(path, "**", "*.json*"), recursive=True))
    files = [f for f in files if f.endswith((".json", ".jsonl"))]
    if not files:
        raise FileNotFoundError(f"no .json/.jsonl files under {path!r}")
    return files


def read_file(task: str, path: str, root: str, skipped: dict | None = None) -> list[Example]:
    """One file's examples. Ids name the file by its path below `root` (the data folder; a file's
    basename when `root` is the file), so two files with one basename in two folders stay apart.
    Rows whose prompt or demonstration is empty (or only whitespace) are skipped, counted and noted."""
    name = os.path.relpath(path, root) if os.path.isdir(root) else os.path.basename(path)
    rows = read_science(path, skipped, name) if task == "science" else READERS[task](path, name)
    kept, empty = [], {}
    for ex in rows:
        blank = [k for k in ("prompt", "demonstration") if not ex[k].strip()]
        if blank:
            empty.setdefault(blank[0], []).append(ex["id"].rsplit("/", 1)[1])
        else:
            kept.append(ex)
    for field, lines in empty.items():
        if skipped is not None:
            skipped[f"empty_{field}"] = skipped.get(f"empty_{field}", 0) + len(lines)
        shown = ", ".join(lines[:10]) + (", ..." if len(lines) > 10 else "")
        print(f"[sdft_jax] data: {path}: skipped {len(lines)} row(s) with an empty {field} (line {shown})", flush=True)
    return kept


def read_task(task: str, path: str, skipped: dict | None = None) -> list[Example]:
    if task not in READERS:
        raise ValueError(f"data.task={task!r}; expected one of {sorted(READERS)}")
    out: list[Example] = []
    for f in data_files(path):
        out.extend(read_file(task, f, path, skipped))
    return out


def deterministic_split(examples: list[Example], fractions: dict[str, float], seed: int = 0) -> dict[str, list]:
    """Splits by a hash of each example id (stable under reordering and appending)."""
    bounds, acc = [], 0.0
    for name, frac in fractions.items():
        acc += frac
        bounds.append((acc, name))
    out: dict[str, list] = {name: [] for name in fractions}
    for ex in examples:
        h = int(hashlib.sha256(f"{seed}:{ex['id']}".encode()).hexdigest()[:12], 16) / float(16 ** 12)
        out[next(name for bound, name in bounds if h < bound + 1e-12) if h < acc else bounds[-1][1]].append(ex)
    return out

