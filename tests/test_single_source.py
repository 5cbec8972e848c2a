"""Every value lives once, in params.yaml: no config field has a Python default, and no function default anywhere in
the project's code disagrees with the params.yaml value of the same name.

The second check reads every function signature of rarl_core/, tasks/, flows/, rarl/ and benchmarks/ with `ast`
(nothing is imported or run): a parameter named like a params.yaml key (`n_resamples`, `image_size`, `max_steps`,
...) whose literal default equals none of the values that key has in params.yaml is a second, disagreeing copy.
"""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import yaml

from rarl_core.config import Config

REPO = Path(__file__).resolve().parents[1]
CODE = ("rarl_core", "tasks", "flows", "rarl", "benchmarks")


def leaf_values(data, out=None) -> dict[str, set]:
    """params.yaml key name -> every value it has anywhere in the file (seed is 0 in several sections)."""
    out = {} if out is None else out
    for key, value in data.items():
        if isinstance(value, dict):
            leaf_values(value, out)
        elif not isinstance(value, list):
            out.setdefault(str(key), set()).add(value)
    return out


def test_no_config_field_has_a_default():
    """A field with a default would be a second copy of its params.yaml value (DatasetSpec's per-dataset options are
    the one exception: optional settings of one dataset, absent = not set)."""
    with_defaults, seen = [], set()

    def walk(cls):
        if cls in seen:
            return
        seen.add(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            if has_default and not f.metadata.get("optional"):
                with_defaults.append(f"{cls.__name__}.{f.name}")
            for hint in (hints[f.name], *typing.get_args(hints[f.name])):
                if dataclasses.is_dataclass(hint):
                    walk(hint)

    walk(Config)
    assert len(seen) >= 14
    assert not with_defaults, f"config fields with a Python default (put the value in params.yaml): {with_defaults}"


def function_defaults(path: Path):
    """(function name, parameter, literal default, line) for every defaulted parameter of every function in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
        pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
        for arg, default in pairs:
            try:
                value = ast.literal_eval(default)
            except ValueError:
                continue  # not a literal (a name, a call): nothing to compare
            yield node.name, arg.arg, value, node.lineno


def test_no_function_default_disagrees_with_params_yaml():
    values = leaf_values(yaml.safe_load((REPO / "params.yaml").read_text()))
    disagreeing = []
    for folder in CODE:
        for path in sorted((REPO / folder).rglob("*.py")):
            for function, name, default, line in function_defaults(path):
                if name in values and default is not None and default not in values[name]:
                    disagreeing.append(f"{path.relative_to(REPO)}:{line} {function}({name}={default!r}); "
                                       f"params.yaml has {sorted(map(repr, values[name]))}")
    assert not disagreeing, "defaults that disagree with params.yaml:\n" + "\n".join(disagreeing)


def test_the_check_can_fail(tmp_path):
    (tmp_path / "m.py").write_text("def f(x, n_resamples=10, seed=0, other=3):\n    pass\n")
    found = list(function_defaults(tmp_path / "m.py"))
    assert ("f", "n_resamples", 10, 1) in found and ("f", "other", 3, 1) in found
