"""The shape of the house: imports point one way (pages -> ui -> nst_core.classroom -> nst_core.serve ->
nst_core.tasks -> nst_core), with no circle, lazy imports inside functions included; the queue never names a backend
nor a kind of task; the package's dependencies are the pinned requirements' names."""

import ast
import re
import tomllib
from pathlib import Path

from tests.conftest import ROOT

# Each may import those before it, never after: the method, what can be run (tasks), the server, the classroom, the
# pages' shared pieces, the pages.
LAYERS = ["nst_core", "nst_core.tasks", "nst_core.serve", "nst_core.classroom", "ui", "ui.pages"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module of this project that `path` imports, at the top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from . import losses` imports a module
    ours = {module_name(p) for p in SOURCES}
    return {m for m in found if m in ours and m != name}


SOURCES = sorted(p for d in ("nst_core", "ui") for p in (ROOT / d).rglob("*.py")) + [ROOT / "app.py"]
GRAPH = {module_name(p): imports(p) for p in SOURCES}


def layer(module: str) -> int:
    if module == "app":
        return len(LAYERS)
    return max(i for i, prefix in enumerate(LAYERS) if module == prefix or module.startswith(prefix + "."))


def test_imports_point_one_way():
    wrong = [(m, i) for m, deps in GRAPH.items() for i in deps if layer(i) > layer(m)]
    assert not wrong, wrong


def test_no_import_circle():
    def visit(m, path):
        if m in path:
            raise AssertionError(" -> ".join(path[path.index(m) :] + [m]))
        for dep in GRAPH.get(m, ()):
            if dep.startswith(m + "."):  # a package importing its own modules is not a circle
                continue
            visit(dep, path + [m])

    for m in GRAPH:
        visit(m, [])


def test_only_the_service_names_the_backends():
    backends = {"nst_core.serve.backends.process", "nst_core.serve.backends.ray", "nst_core.serve.backends.thread"}
    naming = {m for m, deps in GRAPH.items() if deps & backends}
    assert naming == {"nst_core.serve.service"}, naming


def test_the_server_runs_any_task_without_knowing_its_kind():
    """A new kind of run is a new module in nst_core.tasks and its page: the server knows only the Task protocol."""
    naming = {(m, d) for m, deps in GRAPH.items() if m.startswith("nst_core.serve") for d in deps}
    kinds = {(m, d) for m, d in naming if d.startswith("nst_core.tasks.")}
    assert not kinds, kinds


def test_the_method_the_server_and_the_classroom_never_import_streamlit():
    for path in SOURCES:
        if layer(module_name(path)) <= LAYERS.index("nst_core.classroom"):
            assert not re.search(r"^\s*(import|from) streamlit", path.read_text(), re.M), path


def test_the_package_depends_on_the_pinned_requirements():
    def name(req: str) -> str:
        return re.split(r"[<>=!~\[ ;#]", req.strip(), maxsplit=1)[0].lower()

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = [l for l in (ROOT / "requirements.txt").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert {name(r) for r in project["dependencies"]} == {name(r) for r in pinned}
    ray = [l for l in (ROOT / "requirements-ray.txt").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert project["optional-dependencies"]["ray"] == [r.split("#")[0].strip() for r in ray]


def test_no_test_module_imports_another():
    """Helpers shared by tests live in tests/helpers.py (or conftest, fakes, tasks, servers): importing a test module
    would run its top level and tie two test files together."""
    wrong = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = "tests." * bool(node.level) + (node.module or "")
                names = [base] + [f"{base.rstrip('.')}.{a.name}" for a in node.names]
            else:
                continue
            wrong += [(path.name, n) for n in names if n.startswith("tests.test_")]
    assert not wrong, wrong
