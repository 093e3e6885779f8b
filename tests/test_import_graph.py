"""The package's import graph has no circle: module A importing B (at the top or inside a function, where most of
animeseg's imports are) while B, directly or through others, imports A. A circle means neither can be read,
tested or replaced alone, and predicting should never import training or export code.

Imports under ``if TYPE_CHECKING:`` never run and do not count; a module importing its own package's
``__init__`` (``from animeseg.refine import register``) counts like any other edge."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "animeseg"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The animeseg modules ``path`` imports anywhere in its code (not under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:  # `from animeseg.refine import grabcut`: a module
                    found.add(f"{base}.{alias.name}")
                elif base in modules:
                    found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(this)
    found.discard("animeseg")  # the top package: everything's parent, importing nothing of the stages
    return found


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    assert len(graph) > 50 and "animeseg.predict" in graph["animeseg.evaluate"]  # the graph is really read
    found = circles(graph)
    assert found == [], "import circles: " + "; ".join(" <-> ".join(c) for c in found)


#: Packages whose only use is training.
TRAINING_FRAMEWORKS = {"lightning", "pytorch_lightning"}


def trains(path: Path) -> bool:
    """Whether the module at ``path`` is training code wherever it lives: it imports an optimiser
    (``torch.optim``) or a training framework (Lightning), or calls ``.backward()``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names = [f"{node.value.id}.{node.attr}"]
        else:
            names = []
        if any(n.split(".")[0] in TRAINING_FRAMEWORKS or n.startswith("torch.optim") for n in names):
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "backward":
            return True
    return False


def training_or_export_modules() -> set[str]:
    """``animeseg.train``, ``animeseg.export`` and every module elsewhere that trains (:func:`trains`)."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if name.startswith(("animeseg.train", "animeseg.export")) or trains(path):
            found.add(name)
    return found


def test_predicting_imports_no_training_or_export_code():
    graph = import_graph()
    reached, todo = set(), ["animeseg.predict"]
    while todo:
        m = todo.pop()
        if m not in reached:
            reached.add(m)
            todo += graph.get(m, ())
    assert {"animeseg.detector", "animeseg.refine.learned", "animeseg.fusion"} <= reached  # the graph is followed
    bad = sorted(reached & training_or_export_modules())
    assert bad == [], bad


def test_training_code_is_found_wherever_it_lives():
    training = training_or_export_modules()
    # Lightning's module, outside train/; the learned refiner's optimiser loop; YOLO training, export
    assert {"animeseg.maskrcnn.module", "animeseg.train.yolo", "animeseg.export.detector"} <= training
    assert trains(PACKAGE / "maskrcnn" / "module.py") and trains(PACKAGE / "train" / "refiner.py")
    assert not trains(PACKAGE / "refine" / "learned.py") and not trains(PACKAGE / "errors.py")


def test_the_cycle_finder_finds_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


#: Most lines a module may have (docs/architecture.md).
MAX_LINES = 450


def test_no_module_is_over_450_lines():
    """A module that long holds more than one idea: split it (as train/maskrcnn_runs.py was split off)."""
    long = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, long
