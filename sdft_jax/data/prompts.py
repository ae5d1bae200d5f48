"""Student and teacher contexts, exactly as the spec gives them.

student: chat([system?, user: x]) + generation prompt
teacher: chat([system?, user: TEMPLATE(x, c)]) + generation prompt  (the system message is shared)
"""
from __future__ import annotations

DEFAULT_TEACHER_TEMPLATE = (
    "{x}\n\nThis is an example for a response to the question:\n{c}\n\n"
    "Now answer with a response of your own, including the thinking process.")

# data.teacher_template takes a name or the template itself. `paper_code` is the released trainer's
# string (main.py's Template("""...""")), which adds a leading and a trailing newline. `none`: the
# teacher sees the student's own context (classic on-policy distillation from teacher.kind=external).
TEACHER_TEMPLATES = {"paper": DEFAULT_TEACHER_TEMPLATE, "paper_code": "\n" + DEFAULT_TEACHER_TEMPLATE + "\n",
                     "none": "{x}"}


def named_template(template: str) -> str:
    return TEACHER_TEMPLATES.get(template, template)


def check_template(template: str) -> None:
    if template == "none":
        return
    template = named_template(template)
    for slot in ("{x}", "{c}"):
        if slot not in template:
            raise ValueError(f"data.teacher_template must contain {slot}; got {template!r}")


def fill_template(template: str, x: str, c: str) -> str:
    # str.replace, not str.format: demonstrations are full of braces (JSON, code).
    return named_template(template).replace("{x}", x).replace("{c}", c)


def student_messages(example: dict) -> list[dict]:
    system = [{"role": "system", "content": example["system"]}] if example.get("system") else []
    return system + [{"role": "user", "content": example["prompt"]}]


def teacher_messages(example: dict, template: str = DEFAULT_TEACHER_TEMPLATE,
                     demonstration: str | None = None) -> list[dict]:
    system = [{"role": "system", "content": example["system"]}] if example.get("system") else []
    c = example["demonstration"] if demonstration is None else demonstration
    return system + [{"role": "user", "content": fill_template(template, example["prompt"], c)}]


def render(tokenizer, messages: list[dict]) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template; SDFT contexts need one")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def student_context(tokenizer, example: dict) -> str:
    return render(tokenizer, student_messages(example))


def teacher_context(tokenizer, example: dict, template: str = DEFAULT_TEACHER_TEMPLATE,
                    demonstration: str | None = None) -> str:
    return render(tokenizer, teacher_messages(example, template, demonstration))
