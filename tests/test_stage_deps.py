"""DVC never serves a stale result: every stage's code deps in dvc.yaml (and compare/dvc.yaml) are exactly the import
closure of the module its command runs, so editing any file the stage executes makes `dvc status` list the stage.

The closure is read with `ast` from the import statements of each project module, the ones inside functions too
(the stages import heavy libraries lazily), so it over-approximates what runs: a stage may re-run for an edit that
could not change its output, but never stays "up to date" after one that could. Data files the code reads are
listed in DATA_FILES. When this test fails it prints the deps to write; `python tests/test_stage_deps.py` prints
them for every stage.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("rarl_core", "tasks", "flows", "rarl")
DATA_FILES = {"rarl_core/prompts.py": ["rarl_core/prompts.yaml"]}  # files a module reads at run time
PIPELINES = ("dvc.yaml", "compare/dvc.yaml")


def module_path(name: str) -> Path | None:
    """The file of a project module (package or plain module), or None for anything outside the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement in `path` names, `from x import y` giving both x and x.y."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def closure(module: str) -> set[str]:
    """Project files (relative paths) that running `python -m <module>` can execute, and the data files they read."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py first
            path = module_path(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(imported_modules(path))
    files = {p.relative_to(REPO).as_posix() for p in seen}
    return files | {data for f in files for data in DATA_FILES.get(f, [])}


def stages(pipeline: str):
    """(stage name, command module, declared code deps) of every stage of a dvc.yaml, foreach/matrix templates once."""
    data = yaml.safe_load((REPO / pipeline).read_text())
    for name, stage in data["stages"].items():
        body = stage.get("do", stage)
        module = re.search(r"python -m (\S+)", body["cmd"]).group(1)
        declared = {d for d in body.get("deps", []) if d.split("/")[0] in PACKAGES}
        yield name, module, declared


def test_every_stage_depends_on_exactly_the_code_it_runs():
    problems = []
    for pipeline in PIPELINES:
        for name, module, declared in stages(pipeline):
            wanted = closure(module)
            if declared != wanted:
                problems.append(f"{pipeline} stage {name} ({module}):\n  missing: {sorted(wanted - declared)}\n"
                                f"  not imported: {sorted(declared - wanted)}\n  deps to write:\n"
                                + "".join(f"      - {f}\n" for f in sorted(wanted)))
    assert not problems, "\n".join(problems)


def test_closure_follows_lazy_imports_and_packages(tmp_path):
    files = closure("tasks.sft")
    assert {"tasks/sft.py", "tasks/common.py", "rarl_core/sft.py", "rarl_core/config/__init__.py",
            "rarl_core/config/training.py", "rarl_core/prompts.yaml"} <= files  # prompts.py reads prompts.yaml
    assert not any(f.startswith("flows/") for f in files)  # no stage runs the orchestration


if __name__ == "__main__":
    for pipeline in PIPELINES:
        for name, module, _ in stages(pipeline):
            print(f"{pipeline} {name}:\n" + "".join(f"      - {f}\n" for f in sorted(closure(module))))
    sys.exit(0)
