"""The house rules of zoo/, checked on the code itself: imports point one way (no cycle, counting
function-local imports too), no module takes another's private names, modules and functions stay
small, and ``zoo --help`` starts no TensorFlow."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "zoo"
MAX_MODULE_LINES = 420  # "no module over ~400 lines"
MAX_FUNCTION_LINES = 60  # longer ones say why in a "# long: ..." comment at their top


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path) -> list[tuple[str, list[str], int]]:
    """``(module, names, line)`` of every import in ``path``, at any depth (functions included)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [alias.name for alias in node.names], node.lineno))
    return out


def edges_of(name: str) -> set[str]:
    """The zoo modules ``name`` imports: ``from pkg import sub`` counts the submodule, not the
    package's ``__init__`` (the implicit parent-package import is not an edge)."""
    targets = set()
    for module, names, _ in imports_of(MODULES[name]):
        if not module.startswith("zoo"):
            continue
        subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
        targets.update(subs)
        if len(subs) < len(names) or not names:
            targets.add(module)
    return {t for t in targets if t in MODULES and t != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_inside_zoo():
    graph = {name: edges_of(name) for name in MODULES}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_another_modules_private_names():
    offenders = [f"{path.relative_to(ROOT)}:{line} from {module} import {n}"
                 for name, path in MODULES.items() for module, names, line in imports_of(path)
                 if module.startswith("zoo") and module != name for n in names if n.startswith("_")]
    assert not offenders, offenders


def test_framework_internals_are_reached_only_through_zoo_compat():
    offenders = [f"{path.relative_to(ROOT)}:{line} {module}" for name, path in MODULES.items()
                 if name != "zoo.compat" for module, _, line in imports_of(path)
                 if ".src" in module.split(".")[1:2] or module.startswith(("keras.src", "keras_tuner.src"))]
    assert not offenders, offenders


def test_the_data_package_imports_nothing_else_of_the_zoo():
    outside = {f"{name} -> {t}" for name in MODULES if name.startswith("zoo.data")
               for t in edges_of(name) if not t.startswith("zoo.data")}
    assert not outside, outside


def test_lower_layers_never_import_higher_ones():
    order = ["zoo.cli", "zoo.studies", "zoo.search", "zoo.bench", "zoo.training", "zoo.weights", "zoo.models",
             "zoo.layers"]
    rank = {layer: i for i, layer in enumerate(order)}

    def layer_of(module: str) -> str | None:
        return next((layer for layer in order if module == layer or module.startswith(layer + ".")), None)

    upward = [f"{name} -> {t}" for name in MODULES for t in edges_of(name)
              if layer_of(name) and layer_of(t) and rank[layer_of(t)] < rank[layer_of(name)]]
    assert not upward, upward


def test_modules_and_functions_stay_small():
    big_modules = {str(p.relative_to(ROOT)): n for p in MODULES.values()
                   if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    long_functions = []
    for path in MODULES.values():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                head = "\n".join(lines[node.lineno - 1:node.lineno + 8])
                if length > MAX_FUNCTION_LINES and "# long:" not in head:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not big_modules, big_modules
    assert not long_functions, long_functions


@pytest.mark.parametrize("argv", [["--help"], ["weights"]])
def test_zoo_help_and_weights_start_no_tensorflow(argv):
    code = ("import sys\nfrom zoo.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'keras_tuner', 'tensorflow_datasets') if m in sys.modules))"
            % argv)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_zoo_list_starts_no_training_stack_and_prints_no_tensorflow_notice():
    code = ("import sys\nfrom zoo.cli import main\nmain(['list', 'resnet20'])\n"
            "print(sorted(m for m in ('keras_tuner', 'tensorflow_datasets', 'zoo.training') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "oneDNN" not in out.stderr and "InitializeLog" not in out.stderr
