"""The architecture of docs/architecture.md, checked on the source.

The rules are read from the doc's tables (the rooms, the floors of `converters/`, the public faces of the write
room, the dynamic imports, the frameworks kept out), so the doc and this test cannot drift: this file only knows
how to check. Every import counts, lazy ones inside functions too. Each rule is a function over the parsed source
that a small synthetic case below shows failing.

    python -m pytest tests/test_architecture.py -k graph -s      # the import graph's figures
    DROPJ_ARCH_BEFORE=/tmp/before python -m pytest tests/test_architecture.py -k graph -s
                                                                 # and those of an old checkout (d5ccafe's rooms)
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Mapping, Optional

import pytest

from factory import REPO
from dropj_datasets import schema

DOC = REPO / "docs" / "architecture.md"
TOOLING = "tooling"  # the room that is not product: the fixture factory
LOADS_NO_CODE = {"importlib.metadata", "importlib.resources"}  # importlib's parts that read data, never import


# -- the rules, as the doc's tables say them

def markdown_tables(text: str) -> list[tuple[tuple[str, ...], list[dict[str, str]]]]:
    """Every pipe table of a Markdown text: (its header, its rows as {header: cell})."""
    tables, lines = [], text.splitlines()
    i = 0
    while i + 1 < len(lines):
        if lines[i].lstrip().startswith("|") and re.fullmatch(r"\s*\|(\s*:?-+:?\s*\|)+\s*", lines[i + 1]):
            header = tuple(_cells(lines[i]))
            rows, i = [], i + 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                cells = _cells(lines[i])
                assert len(cells) == len(header), f"a row of table {header} has {len(cells)} cells: {lines[i]}"
                rows.append(dict(zip(header, cells)))
                i += 1
            tables.append((header, rows))
        else:
            i += 1
    return tables


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def names_in(cell: str) -> list[str]:
    """A cell's comma-separated names, without Markdown marks; 'none' or '-' for none."""
    names = [re.sub(r"[`*]", "", part).strip() for part in cell.split(",")]
    return [name for name in names if name and name.lower() not in ("none", "-", "—")]


def table(text: str, header: tuple[str, ...]) -> list[dict[str, str]]:
    found = [rows for head, rows in markdown_tables(text) if head == header]
    assert len(found) == 1, f"{DOC.name} must hold exactly one table headed {' | '.join(header)}"
    return found[0]


@dataclasses.dataclass(frozen=True)
class Unit:
    """A room, or a floor of the write room: where its files live, their import name, what they may import."""

    name: str
    room: str
    folder: str  # relative, ending in '/'
    module: str
    may_import: frozenset
    floor: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Layout:
    units: tuple
    faces: Mapping[str, frozenset]  # file or folder -> the write room's modules it may import (lazily)
    dynamic: frozenset  # files that may import by computed name
    never: Mapping[str, tuple]  # file or folder -> frameworks it never imports

    def product_units(self) -> list[Unit]:
        return [unit for unit in self.units if unit.room != TOOLING]

    def unit_of_file(self, relative: str) -> Optional[Unit]:
        matches = [unit for unit in self.units if relative.startswith(unit.folder)]
        return max(matches, key=lambda unit: len(unit.folder), default=None)

    def unit_of_module(self, name: str) -> Optional[Unit]:
        matches = [unit for unit in self.units if name == unit.module or name.startswith(unit.module + ".")]
        return max(matches, key=lambda unit: len(unit.module), default=None)

    def module_of_file(self, relative: str) -> str:
        unit = self.unit_of_file(relative)
        parts = Path(relative[len(unit.folder):]).with_suffix("").parts
        return ".".join((unit.module, *parts[:-1], *([] if parts[-1] == "__init__" else parts[-1:])))

    def files(self, repo: Path) -> list[str]:
        """The Python files of every room (the builders' TFDS `*_test.py` beside them are tests)."""
        return sorted({path.relative_to(repo).as_posix() for unit in self.units
                       for path in (repo / unit.folder).rglob("*.py") if not path.name.endswith("_test.py")})


def read_layout(text: str) -> Layout:
    """The rules of docs/architecture.md: its room table, its floor table, and its tables of exceptions."""
    units = []
    for row in table(text, ("room", "folder", "import name", "may import", "libraries", "its job")):
        units.append(Unit(names_in(row["room"])[0], names_in(row["room"])[0], names_in(row["folder"])[0],
                          names_in(row["import name"])[0], frozenset(names_in(row["may import"]))))
    for row in table(text, ("floor", "sub-package", "import name", "may import", "owns")):
        folder = names_in(row["sub-package"])[0]
        units.append(Unit(folder.rstrip("/").rsplit("/", 1)[-1], "write", folder, names_in(row["import name"])[0],
                          frozenset(names_in(row["may import"])), int(row["floor"])))
    faces = {}
    for row in table(text, ("file or folder", "may also import", "why")):
        faces[names_in(row["file or folder"])[0]] = frozenset(names_in(row["may also import"]))
    dynamic = frozenset(names_in(row["file"])[0] for row in table(text, ("file", "imports by computed name because")))
    never = {names_in(row["file or folder"])[0]: tuple(names_in(row["never imports"]))
             for row in table(text, ("file or folder", "never imports"))}
    return Layout(tuple(units), faces, dynamic, never)


def covers(path: str, relative: str) -> bool:
    """Whether a doc's file-or-folder names this file."""
    return relative == path or (path.endswith("/") and relative.startswith(path))


def is_under(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


# -- what the source does

@dataclasses.dataclass(frozen=True)
class Import:
    line: int
    module: str  # a product module where the import names one (the longest that exists), else as written
    lazy: bool  # inside a function: runs when called, not when the module loads
    text: str


@dataclasses.dataclass
class Scan:
    """One file's imports, and the rule-relevant things it does besides."""

    imports: list
    private: list  # (line, what): a private name of another product module
    dynamic: list  # (line, what): an import by computed name
    sys_path: list  # (line, what): sys.path touched


def scan(source: str, module: str, is_package: bool, known: Iterable[str], filename: str = "<source>") -> Scan:
    """Reads one module's source. `known` names every product module, so that `from pkg import name` counts as
    an import of the module `pkg.name` when there is one (and not of `pkg`), else of `pkg`. Importing a
    submodule runs its parents' `__init__` too; that is not counted as an import of them."""
    known = set(known)
    tree = ast.parse(source, filename)
    package = module if is_package else module.rpartition(".")[0]
    internal_roots = {name.split(".")[0] for name in known}

    def resolve(name: str) -> str:
        if name.split(".")[0] not in internal_roots:
            return name
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in known:
                return ".".join(parts[:end])
        return name

    def absolute(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module
        base = package.split(".")
        base = base[: len(base) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else []))

    lazy_nodes = set()
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            lazy_nodes.update(id(node) for node in ast.walk(function) if node is not function)

    result = Scan([], [], [], [])
    bound = {}  # local name -> the product module it is bound to
    for node in ast.walk(tree):
        lazy = id(node) in lazy_nodes
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name)
                result.imports.append(Import(node.lineno, target, lazy, f"import {alias.name}"))
                if alias.asname and target == alias.name and target in known:
                    bound[alias.asname] = target
                elif not alias.asname and alias.name.split(".")[0] in internal_roots:
                    bound.setdefault(alias.name.split(".")[0], alias.name.split(".")[0])
                if _computed(alias.name):
                    result.dynamic.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            source_module = absolute(node)
            targets = set()
            for alias in node.names:
                full = f"{source_module}.{alias.name}"
                target = full if full in known else resolve(source_module)
                targets.add(target)
                if target == full:
                    bound[alias.asname or alias.name] = full
                if _private(alias.name) and resolve(source_module) in known:
                    result.private.append((node.lineno, f"from {source_module} import {alias.name}"))
                if _computed(full):
                    result.dynamic.append((node.lineno, f"from {source_module} import {alias.name}"))
            text = f"from {'.' * node.level}{node.module or ''} import {', '.join(a.name for a in node.names)}"
            result.imports += [Import(node.lineno, target, lazy, text) for target in sorted(targets)]
        elif isinstance(node, ast.Name) and node.id == "__import__":
            result.dynamic.append((node.lineno, "__import__"))
        elif isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
                and node.value.id == "sys":
            result.sys_path.append((node.lineno, "sys.path"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            dotted = _dotted(node.value)
            if dotted and dotted.split(".")[0] in bound:
                head, _, rest = dotted.partition(".")
                target = ".".join(filter(None, (bound[head], rest)))
                if target in known and target != module:
                    result.private.append((node.lineno, f"{dotted}.{node.attr}"))
    return result


def _computed(name: str) -> bool:
    """Whether importing `name` gives a way to import modules by computed name."""
    return is_under(name, "imp") or is_under(name, "importlib") and not any(is_under(name, m) for m in LOADS_NO_CODE)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.AST) -> Optional[str]:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


@dataclasses.dataclass
class Source:
    """Every file of a tree under a layout, scanned."""

    repo: Path
    layout: Layout
    modules: dict  # module name -> relative file
    scans: dict  # relative file -> Scan

    @classmethod
    def read(cls, repo: Path, layout: Layout) -> "Source":
        files = layout.files(repo)
        modules = {layout.module_of_file(f): f for f in files}
        scans = {f: scan((repo / f).read_text(), layout.module_of_file(f), f.endswith("/__init__.py"), modules, f)
                 for f in files}
        return cls(repo, layout, modules, scans)

    def product(self) -> list[str]:
        return [f for f in self.scans if self.layout.unit_of_file(f).room != TOOLING]

    def graph(self) -> dict[str, set]:
        """Product module -> the product modules it imports (lazily or not)."""
        product = {self.layout.module_of_file(f) for f in self.product()}
        return {self.layout.module_of_file(f): {i.module for i in self.scans[f].imports
                                                 if i.module in product and i.module != self.layout.module_of_file(f)}
                for f in self.product()}


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The import cycles of a graph: its strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
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
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


def importable_test_names(repo: Path, layout: Layout) -> set[str]:
    """The names under which tests/ can be imported: its top-level modules and folders, and `tests`."""
    product_roots = {unit.module.split(".")[0] for unit in layout.product_units()}
    return {"tests"} | {p.stem for p in (repo / "tests").iterdir()
                        if (p.suffix == ".py" or p.is_dir()) and p.name != "__pycache__"} - product_roots


# -- each rule: the violations it finds, as lines naming file and import

def room_violations(source: Source) -> list[str]:
    layout, wrong = source.layout, []
    for relative in source.scans:  # the tooling's files too: its row says what it may import
        unit = layout.unit_of_file(relative)
        for imp in source.scans[relative].imports:
            target = layout.unit_of_module(imp.module)
            if target is None or target == unit or target.name in unit.may_import or target.room in unit.may_import:
                continue
            if any(covers(path, relative) and any(is_under(imp.module, m) for m in modules)
                   for path, modules in layout.faces.items()):
                continue
            wrong.append(f"{relative}:{imp.line} ({unit.name}) imports {imp.module} ({target.name}): {imp.text}")
    return wrong


def framework_violations(source: Source) -> list[str]:
    wrong = []
    for relative in source.product():
        never = [m for path, frameworks in source.layout.never.items() if covers(path, relative) for m in frameworks]
        wrong += [f"{relative}:{imp.line} imports {imp.module}: {imp.text}" for imp in source.scans[relative].imports
                  if any(is_under(imp.module, m) for m in never)]
    return wrong


def face_violations(source: Source) -> list[str]:
    """Loaders, models and the define room reach the write room only through its documented faces, lazily."""
    layout, wrong = source.layout, []
    for relative in source.product():
        unit = layout.unit_of_file(relative)
        if unit.room in ("write", "app"):
            continue
        for imp in source.scans[relative].imports:
            target = layout.unit_of_module(imp.module)
            if target is None or target.room != "write":
                continue
            faces = [m for path, modules in layout.faces.items() if covers(path, relative) for m in modules]
            if not any(is_under(imp.module, m) for m in faces):
                wrong.append(f"{relative}:{imp.line} imports {imp.module}, not a public face of converters "
                             f"for {unit.name} ({', '.join(sorted(faces)) or 'none'}): {imp.text}")
            elif not imp.lazy:
                wrong.append(f"{relative}:{imp.line} imports {imp.module} when it loads; a face is imported "
                             f"inside the function that needs it: {imp.text}")
    return wrong


def unused_faces(source: Source) -> list[str]:
    used = {(path, m) for relative in source.product() for imp in source.scans[relative].imports
            for path, modules in source.layout.faces.items() if covers(path, relative)
            for m in modules if is_under(imp.module, m)}
    return [f"{path} -> {m}" for path, modules in source.layout.faces.items() for m in sorted(modules)
            if (path, m) not in used]


def dynamic_violations(source: Source) -> list[str]:
    return [f"{relative}:{line} {what}" for relative in source.product() if relative not in source.layout.dynamic
            for line, what in source.scans[relative].dynamic]


def reaches_into_tests(source: Source) -> list[str]:
    names = importable_test_names(source.repo, source.layout)
    wrong = []
    for relative in source.product():
        found = source.scans[relative]
        wrong += [f"{relative}:{imp.line} imports {imp.module} (tests/): {imp.text}" for imp in found.imports
                  if imp.module.split(".")[0] in names]
        wrong += [f"{relative}:{line} touches {what}" for line, what in found.sys_path]
    return wrong


def private_violations(source: Source) -> list[str]:
    return [f"{relative}:{line} uses {what}" for relative in source.product()
            for line, what in source.scans[relative].private]


def figures(source: Source) -> dict:
    """The import graph's figures (docs/architecture.md, "Before and after")."""
    graph, layout = source.graph(), source.layout
    room = {module: layout.unit_of_module(module).room for module in graph}
    edges = [(a, b) for a, targets in graph.items() for b in targets]
    eager = {(layout.module_of_file(f), i.module) for f in source.product() for i in source.scans[f].imports
             if not i.lazy}
    crossing = [(a, b) for a, b in edges if room[a] != room[b]]
    from_app = [(a, b) for a, b in crossing if room[a] == "app"]
    into_define = [(a, b) for a, b in crossing if room[a] != "app" and room[b] == "define"]
    into_write = [(a, b) for a, b in crossing if room[a] != "app" and room[b] == "write"]
    found = cycles(graph)
    return {
        "modules": len(graph),
        "import edges": len(edges),
        "of which only lazy": sum(1 for edge in edges if edge not in eager),
        "edges crossing rooms": len(crossing),
        "from app": len(from_app),
        "into define": len(into_define),
        "into write, from define, read, models": sorted(f"{a} -> {b}" for a, b in into_write),
        "any other": sorted(f"{a} -> {b}" for a, b in set(crossing) - set(from_app + into_define + into_write)),
        "cycles": found,
        "modules in cycles": sum(len(c) for c in found),
        "private names used across modules": sorted(set(private_violations(source))),
        "imports by computed name (importlib, __import__)": sorted(
            f"{f}:{line} {what}" for f in source.product() for line, what in source.scans[f].dynamic),
        "product -> tests (imports, sys.path)": sorted(reaches_into_tests(source)),
    }


# The rooms of commit d5ccafe (before issue 23), for the figures of docs/architecture.md: the write room flat,
# the application layer in dropj_datasets/cli.
BEFORE = Layout(
    units=(Unit("define", "define", "dropj_datasets/", "dropj_datasets", frozenset()),
           Unit("app", "app", "dropj_datasets/cli/", "dropj_datasets.cli", frozenset()),
           Unit("write", "write", "converters/", "dropj.converters", frozenset()),
           Unit("read", "read", "loaders/", "dropj.loaders", frozenset()),
           Unit("models", "models", "models/", "dropj.models", frozenset()),
           Unit(TOOLING, TOOLING, "tests/factory/", "factory", frozenset())),
    faces={}, dynamic=frozenset(), never={})


# -- the tests

@pytest.fixture(scope="module")
def source() -> Source:
    return Source.read(REPO, read_layout(DOC.read_text()))


def _says(wrong: list[str], rule: str) -> str:
    return f"{rule} (docs/architecture.md):\n" + "\n".join(sorted(set(wrong)))


def test_the_doc_covers_every_product_folder(source):
    """Every package setup.cfg installs lies in a room of the doc, and every sub-package of converters/ is a floor."""
    import configparser

    layout = source.layout
    assert {unit.name for unit in layout.units} >= {"define", "write", "read", "models", "app", TOOLING}
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    packages = config["options"]["packages"].split()
    outside = [p for p in packages if layout.unit_of_module(p) is None or layout.unit_of_module(p).room == TOOLING]
    assert packages and not outside, f"packages of setup.cfg in no room of docs/architecture.md: {outside}"
    for unit in layout.units:
        assert (REPO / unit.folder).is_dir(), f"the doc's folder {unit.folder} ({unit.name}) is not in the tree"
    floors = {unit.folder for unit in layout.units if unit.floor is not None}
    missing = [f"converters/{p.name}/" for p in (REPO / "converters").iterdir()
               if (p / "__init__.py").is_file() and f"converters/{p.name}/" not in floors]
    assert not missing, f"sub-packages of converters/ that are no floor in the doc's table: {missing}"
    for path in (*layout.faces, *layout.dynamic, *layout.never):
        assert (REPO / path).exists(), f"docs/architecture.md names {path}, which is not in the tree"


def test_the_floors_form_an_order(source):
    """Each floor may import only floors below it (none of its peers) and the define room; no room imports app;
    the declared rooms and floors import each other in no cycle. Storage is the ground floor."""
    units = {unit.name: unit for unit in source.layout.units}
    wrong = []
    for unit in units.values():
        for name in unit.may_import:
            if name not in units:
                wrong.append(f"{unit.name} may import {name}, which is no room or floor of the doc")
            elif unit.floor is not None and name != "define" and not (units[name].floor or 99) < unit.floor:
                wrong.append(f"floor {unit.floor} {unit.name} may import {name}, not a floor below it")
            elif name == "app" and unit.room != TOOLING:
                wrong.append(f"{unit.name} may import app: no room imports the application layer")
    declared = {name: {n for n in unit.may_import if n in units} for name, unit in units.items()}
    assert not wrong and not cycles(declared), "\n".join(wrong) + f"\ncycles: {cycles(declared)}"
    assert min(units.values(), key=lambda unit: unit.floor or 99).name == "store"


def test_each_room_and_floor_imports_only_what_it_may(source):
    wrong = room_violations(source)
    assert not wrong, _says(wrong, "imports a room or floor its row does not allow")


def test_no_framework_where_the_doc_keeps_it_out(source):
    wrong = framework_violations(source)
    assert not wrong, _says(wrong, "imports a framework the doc keeps out of it")


def test_no_import_cycles_lazy_imports_included(source):
    found = cycles(source.graph())
    assert not found, "import cycles (lazy imports included):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_loaders_models_and_builder_reach_converters_only_through_its_faces(source):
    wrong = face_violations(source)
    assert not wrong, _says(wrong, "reaches converters other than through a documented face")
    stale = unused_faces(source)
    assert not stale, f"faces in docs/architecture.md that nothing imports any more: {stale}"


def test_no_import_by_computed_name_outside_the_registry(source):
    wrong = dynamic_violations(source)
    assert not wrong, _says(wrong, "imports by computed name outside the documented files")


def test_no_product_module_imports_tests(source):
    wrong = reaches_into_tests(source)
    assert not wrong, _says(wrong, "product code reaches into tests/")


def test_private_names_stay_in_their_module(source):
    wrong = private_violations(source)
    assert not wrong, _says(wrong, "a private name of a product module is used in another")


def test_graph_figures(source, capsys):
    """Prints the figures of docs/architecture.md's "Before and after" (`-k graph -s`); DROPJ_ARCH_BEFORE names
    a checkout of the tree before issue 23 to count it too, with that tree's rooms."""
    trees = {"after": source}
    if os.environ.get("DROPJ_ARCH_BEFORE"):
        trees = {"before": Source.read(Path(os.environ["DROPJ_ARCH_BEFORE"]), BEFORE), **trees}
    with capsys.disabled():
        for name, tree in trees.items():
            print(f"\n{name}: {tree.repo}")
            for key, value in figures(tree).items():
                if isinstance(value, list):
                    print(f"  {key}: {len(value)}")
                    for item in value:
                        print(f"      {item}")
                else:
                    print(f"  {key}: {value}")
    assert figures(source)["cycles"] == []


# -- each rule can fail: the same functions on small synthetic cases

def test_cycles_are_found_in_a_small_graph():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert cycles(graph) == [["a", "b", "c"], ["e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


SNIPPET = '''
import dropj.pkg.other as other
from dropj.pkg import mod, _helper
from . import mod as again
from .mod import _TABLE, PUBLIC
import importlib
from importlib import metadata
import sys

def lazily():
    from dropj.pkg.other import thing
    sys.path.insert(0, "tests")
    import factory.sample
    return other._private, mod.public, again._other, __import__("x"), other.__dunder__
'''


def test_the_scan_reads_imports_privates_and_dynamic_imports_of_a_snippet():
    known = {"dropj.pkg", "dropj.pkg.mod", "dropj.pkg.other", "dropj.pkg.me"}
    found = scan(SNIPPET, "dropj.pkg.me", False, known)
    imports = {(i.module, i.lazy) for i in found.imports}
    assert ("dropj.pkg.mod", False) in imports and ("dropj.pkg.other", True) in imports
    assert ("dropj.pkg", False) in imports  # `_helper` is no module: an import of the package
    assert [i.module for i in found.imports if i.line == 4] == ["dropj.pkg.mod"]  # the module, not its package
    assert sorted(what for _, what in found.private) == [
        "again._other", "from dropj.pkg import _helper", "from dropj.pkg.mod import _TABLE", "other._private"]
    assert sorted(what for _, what in found.dynamic) == ["__import__", "import importlib"]
    assert found.sys_path == [(12, "sys.path")]


def test_each_rule_reports_a_synthetic_violation(tmp_path):
    layout = Layout(
        units=(Unit("define", "define", "d/", "d", frozenset()),
               Unit("write", "write", "w/", "dropj.w", frozenset({"define"})),
               Unit("store", "write", "w/store/", "dropj.w.store", frozenset({"define"}), 1),
               Unit("read", "read", "r/", "dropj.r", frozenset({"define"})),
               Unit(TOOLING, TOOLING, "tests/factory/", "factory", frozenset({"define", "write", "read"}))),
        faces={"r/": frozenset({"dropj.w.store.disk"})}, dynamic=frozenset(), never={"r/x.py": ("torch",)})
    files = {"d/__init__.py": "import dropj.r.x\n", "w/__init__.py": "", "w/store/__init__.py": "",
             "w/store/disk.py": "from dropj.w.store import _low\nfrom d import _high\n",
             "r/__init__.py": "", "r/x.py": "import torch\nfrom dropj.w.store import disk\nimport importlib\n"
                                            "import factory\n",
             "tests/factory/__init__.py": "", "tests/conftest.py": ""}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    tree = Source.read(tmp_path, layout)
    assert room_violations(tree) == ["d/__init__.py:1 (define) imports dropj.r.x (read): import dropj.r.x",
                                     "r/x.py:4 (read) imports factory (tooling): import factory"]
    assert framework_violations(tree) == ["r/x.py:1 imports torch: import torch"]
    assert face_violations(tree) == ["r/x.py:2 imports dropj.w.store.disk when it loads; a face is imported inside "
                                     "the function that needs it: from dropj.w.store import disk"]
    assert dynamic_violations(tree) == ["r/x.py:3 import importlib"]
    assert reaches_into_tests(tree) == ["r/x.py:4 imports factory (tests/): import factory"]
    assert private_violations(tree) == ["w/store/disk.py:1 uses from dropj.w.store import _low",
                                        "w/store/disk.py:2 uses from d import _high"]
    assert cycles(tree.graph()) == [["d", "dropj.r.x", "dropj.w.store.disk"]]


# -- fresh interpreters: what a light import loads

def _fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


HEAVY = ("tensorflow", "tensorflow_datasets", "torch", "rlds", "reverb", "envlogger")


@pytest.mark.parametrize("module, absent", [
    *((m, HEAVY) for m in ("dropj_datasets.schema", "dropj_datasets.envs", "dropj_datasets.codec", "dropj_datasets")),
    ("dropj.loaders.splits", HEAVY),  # the split both readers share: numpy only
    ("dropj.loaders.episode_source", HEAVY),  # the TF-free reader
    ("dropj.models", ("tensorflow", "tensorflow_datasets")),
])
def test_light_modules_load_no_framework(module, absent):
    loaded = _fresh(f"import sys, {module}\nprint(','.join(m for m in {absent!r} if m in sys.modules))")
    assert loaded == "", f"importing {module} loaded {loaded}"


@pytest.mark.slow
@pytest.mark.parametrize("order", ["dropj_datasets first", "tensorflow_datasets first", "builder module first",
                                   "features module first"])
def test_importing_dropj_datasets_registers_both_builders_in_either_order(order):
    first, second = {"dropj_datasets first": ("import dropj_datasets", "import tensorflow_datasets as tfds"),
                     "tensorflow_datasets first": ("import tensorflow_datasets as tfds", "import dropj_datasets"),
                     "builder module first": ("import dropj_datasets.builder",
                                              "import tensorflow_datasets as tfds"),
                     # the shard stores' path: the features first, then TFDS (whose import registers the
                     # builders, which import the features module)
                     "features module first": ("from dropj_datasets import features, schema",
                                               "features.recording_features(schema.RECORDINGS['carracing'])")}[order]
    out = _fresh(f"{first}\n{second}\nimport tensorflow_datasets as tfds\n"
                 "print(sorted(b for b in tfds.list_builders() if b.startswith('dropj')))")
    assert out == "['dropj_carracing', 'dropj_obst_carracing']"


# -- the registries hold together

def test_every_kind_has_a_converter_and_every_spec_a_kind():
    from dropj.converters.release import kinds

    specs = [spec for configs in schema.DATASETS.values() for spec in configs.values()]
    specs += [spec for configs in schema.WRITTEN.values() for spec in configs.values()]
    assert {spec.kind for spec in specs} == set(schema.KINDS)
    for spec in specs:
        converter = kinds.converter(spec)
        assert isinstance(converter, kinds.Converter), spec.config
        assert spec.fields() and spec.needs(), spec.config


def test_every_kind_our_tools_write_names_its_store_and_no_release_kind_does():
    from dropj.converters.release import kinds
    from dropj.converters.store import shards

    for name, configs in schema.WRITTEN.items():
        for spec in configs.values():
            store = kinds.store(spec)
            assert issubclass(store, shards.ShardStore) and store.DATASET == name and store.VERSION, spec.config
            assert shards.STORES[name] is store
    for configs in schema.DATASETS.values():
        for spec in configs.values():
            with pytest.raises(schema.DataError, match="built from release files"):
                kinds.store(spec)


def test_every_env_has_one_identity_that_models_envs_and_the_recorder_read():
    import gymnasium

    import dropj_datasets.envs  # noqa: F401  (registers the ids)
    from dropj.converters.recording import capture
    from dropj.models import MDNRNN, ConvVAE

    for name, env in schema.ENVS.items():
        made = capture.make_env(name, 5)
        assert made.unwrapped.env_spec is env, name
        assert made.observation_space.shape == env.frame_shape
        assert gymnasium.spec(env.gym_id).id == env.gym_id
        assert MDNRNN.for_env(name).config.n_mixtures == env.n_mixtures
        assert ConvVAE.for_env(env).config.n_z == env.n_z
        made.close()
