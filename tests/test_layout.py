"""The house rules of docs/architecture.md, checked from the source: which room may import which,
no import circles, no function-level imports of fastload modules (but the one that keeps Ray
optional), entry points that only hand over to their command."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fastload"
# Importable everywhere: they import nothing of fastload.
GROUND = {"memory", "_pb"}
# Room -> the rooms its modules may import at run time (TYPE_CHECKING imports are free).
ALLOWED = {
    "contract": set(),
    "arrivals": {"contract"},
    "records": {"contract"},
    "targets": {"contract", "records"},
    "send": {"contract", "arrivals", "records", "targets"},
    "scrape": {"contract"},
    "results": {"contract", "records", "scrape"},
    "scheduler": {"contract"},
    "run": {"contract", "arrivals", "records", "targets", "send", "scrape", "results",
            "scheduler"},
    "commands": {"contract", "arrivals", "records", "targets", "send", "scrape", "results",
                 "scheduler", "run"},
}
# The entry points `python -m` runs: each imports its command and nothing else of fastload.
ENTRY_POINTS = {"__main__": "commands.run", "sweep": "commands.sweep",
                "report": "commands.report", "scheduler.__main__": "commands.scheduler"}
# Imported inside a function on purpose: importing the Ray driver imports Ray, an optional extra.
FUNCTION_LEVEL = {("commands.run", "run.shards.driver")}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name below ``fastload`` (packages by their name)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = _modules()


def _target(name: str) -> str | None:
    """The fastload module an absolute import names (its longest known prefix; the package
    itself, "", is never one: it holds only the version)."""
    if not name.startswith("fastload."):
        return None
    name = name.removeprefix("fastload.")
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> list[tuple[str, bool]]:
    """(imported fastload module, whether the import is inside a function), TYPE_CHECKING
    blocks left out."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    typing_only = {id(node) for branch in ast.walk(tree) if isinstance(branch, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(branch.test) for node in ast.walk(branch)}
    in_function = {id(node) for function in ast.walk(tree)
                   if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for node in ast.walk(function)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{module}: relative import of {node.module}"
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        targets = {_target(name) for name in names} - {None, module}
        # `from fastload.x import y` names both x and x.y: keep the most specific module.
        targets = {t for t in targets if not any(o.startswith(t + ".") for o in targets)}
        found += [(target, id(node) in in_function) for target in sorted(targets)]
    return found


def _room(module: str) -> str:
    return module.split(".")[0]


def test_every_module_belongs_to_a_room():
    rooms = {_room(m) for m in MODULES if m not in ENTRY_POINTS and m != ""}
    assert rooms <= set(ALLOWED) | GROUND, sorted(rooms - set(ALLOWED) - GROUND)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m and m not in ENTRY_POINTS))
def test_imports_go_down_only(module: str):
    room = _room(module)
    allowed = set() if room in GROUND else ALLOWED[room] | GROUND | {room}
    wrong = [target for target, _ in _imports(module) if _room(target) not in allowed]
    assert not wrong, f"{module} ({room}) imports {wrong}; {room} may import {sorted(allowed)}"


def test_no_function_level_imports_of_fastload_modules():
    found = {(module, target) for module in MODULES for target, inside in _imports(module)
             if inside}
    assert found == FUNCTION_LEVEL


@pytest.mark.parametrize("entry, command", sorted(ENTRY_POINTS.items()))
def test_entry_points_hand_over_to_their_command(entry: str, command: str):
    assert [target for target, _ in _imports(entry)] == [command]


def test_no_import_circles():
    graph = {module: {target for target, _ in _imports(module)} for module in MODULES}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, "import circle: " + " -> ".join([*path, module])
        if module in done:
            return
        for target in graph[module]:
            visit(target, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])


@pytest.mark.parametrize("package", ["fastload.contract", "fastload.arrivals"])
def test_package_files_import_nothing(package: str):
    """An arrival process imports these packages on its way to its own source."""
    assert _imports(package.removeprefix("fastload.")) == []


def test_the_loadgen_process_does_not_load_numpy():
    code = ("import sys, fastload.arrivals.loadgen; "
            "assert 'numpy' not in sys.modules, 'numpy was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
