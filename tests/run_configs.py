"""The shipped config files as tests load them: configs/NAME.py's get_config(arg) with overrides."""
import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name: str, arg=None, **overrides):
    """configs/NAME.py:ARG with `overrides` ({"optim.lr": 1e-3, ...}) set on the result."""
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", os.path.join(REPO, "configs", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config(arg)
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c
