"""Architecture rules, checked on the import graph of gau_jax/, configs/ and experiments/.

Every `import x` and `from x import y` is read with `ast` — at module level and inside functions
(lazy imports count: they are dependencies all the same) — and resolved to the repository module
it names (`from a import b` is the module a.b if there is one, else a). Rules:

  1. no import cycle among gau_jax modules;
  2. configs/, gau_jax/layers/ and gau_jax/models/ import nothing from gau_jax.train;
  3. gau_jax/ imports nothing from experiments;
  4. gau_jax/layers/ imports nothing from gau_jax.models;
  5. the shared low modules stay low: gau_jax.atomic imports no gau_jax module (data/ and
     everything above may use it); gau_jax.workdir (the workdir layout, read by pretrained.py,
     convert/ and train/) imports nothing from gau_jax.train, gau_jax.pretrained or experiments.

A failure lists every offending import as `file:line: source -> target`.
"""

from __future__ import annotations

import ast
import dataclasses
import pathlib
import re

Path = pathlib.Path
ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("gau_jax", "configs", "experiments")


@dataclasses.dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported repository module
    path: pathlib.Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.source} -> {self.target}"


def find_modules(root: pathlib.Path, packages: tuple[str, ...]) -> dict[str, pathlib.Path]:
    """Dotted module name -> file, for every .py file under root/<package>."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, pathlib.Path]) -> str | None:
    """The longest prefix of dotted `name` that is a repository module (None: not ours)."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        candidate = ".".join(parts[:k])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, modules: dict[str, pathlib.Path],
               root: pathlib.Path) -> list[Import]:
    """Every repository import in `module`'s file, function-level ones included."""
    path = modules[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names = [base if a.name == "*" else f"{base}.{a.name}" for a in node.names]
        for name in names:
            target = _resolve(name, modules)
            if target is not None and target != module:
                found.append(Import(module, target, path.relative_to(root), node.lineno))
    return found


def import_graph(root: pathlib.Path = ROOT,
                 packages: tuple[str, ...] = PACKAGES) -> list[Import]:
    modules = find_modules(root, packages)
    return [imp for m in modules for imp in imports_of(m, modules, root)]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def find_cycles(edges: list[Import], prefix: str) -> list[list[Import]]:
    """One import cycle (as its edges) per strongly connected component of modules in `prefix`."""
    graph: dict[str, list[Import]] = {}
    for e in edges:
        if _within(e.source, prefix) and _within(e.target, prefix):
            graph.setdefault(e.source, []).append(e)
            graph.setdefault(e.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan; the graph is small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        for e in graph[v]:
            w = e.target
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_cycle_in(comp, graph) for comp in components]


def _cycle_in(comp: set[str], graph: dict[str, list[Import]]) -> list[Import]:
    """A shortest cycle through the component's first module (breadth-first)."""
    start = min(comp)
    parent: dict[str, Import] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for e in graph[v]:
                if e.target not in comp:
                    continue
                if e.target == start:
                    path = [e]
                    while path[0].source != start:
                        path.insert(0, parent[path[0].source])
                    return path
                if e.target not in parent:
                    parent[e.target] = e
                    nxt.append(e.target)
        frontier = nxt
    raise AssertionError(f"no cycle in component {sorted(comp)}")


def _forbidden(edges: list[Import], sources: tuple[str, ...], target: str) -> list[Import]:
    return [e for e in edges
            if any(_within(e.source, s) for s in sources) and _within(e.target, target)]


def _report(title: str, bad: list[Import]) -> str:
    return "\n".join([title, *(f"  {e}" for e in bad)])


def test_no_import_cycle_in_gau_jax():
    cycles = find_cycles(import_graph(), "gau_jax")
    lines = []
    for cycle in cycles:
        lines.append("cycle: " + " -> ".join([e.source for e in cycle] + [cycle[0].source]))
        lines += [f"  {e}" for e in cycle]
    assert not cycles, "import cycles among gau_jax modules:\n" + "\n".join(lines)


def test_configs_models_layers_do_not_import_train():
    bad = _forbidden(import_graph(), ("configs", "gau_jax.models", "gau_jax.layers"),
                     "gau_jax.train")
    assert not bad, _report("configs/ and gau_jax/{models,layers}/ import gau_jax.train:", bad)


def test_gau_jax_does_not_import_experiments():
    bad = _forbidden(import_graph(), ("gau_jax",), "experiments")
    assert not bad, _report("gau_jax/ imports experiments:", bad)


def test_layers_do_not_import_models():
    bad = _forbidden(import_graph(), ("gau_jax.layers",), "gau_jax.models")
    assert not bad, _report("gau_jax/layers/ imports gau_jax.models:", bad)


def test_low_modules_stay_low():
    edges = import_graph()
    bad = _forbidden(edges, ("gau_jax.atomic",), "gau_jax")
    bad += [e for target in ("gau_jax.train", "gau_jax.pretrained", "experiments")
            for e in _forbidden(edges, ("gau_jax.workdir",), target)]
    assert not bad, _report("gau_jax.atomic / gau_jax.workdir import from above them:", bad)


def test_checker_sees_lazy_and_relative_imports(tmp_path):
    """The rules above rest on the parser: a planted cycle and a planted lazy import are found."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")
    (pkg / "a.py").write_text("import json\nfrom pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import x\n    return x\n")
    (pkg / "c.py").write_text("def g():\n    import pkg.train.loop\n")
    (pkg / "train").mkdir()
    (pkg / "train" / "__init__.py").write_text("")
    (pkg / "train" / "loop.py").write_text("")
    edges = import_graph(tmp_path, ("pkg",))
    assert {(e.source, e.target, e.line) for e in edges} == {
        ("pkg.sub", "pkg.sub.b", 1), ("pkg.a", "pkg.sub.b", 2), ("pkg.sub.b", "pkg.a", 2),
        ("pkg.c", "pkg.train.loop", 2)}
    cycles = find_cycles(edges, "pkg")
    assert [[e.source for e in c] for c in cycles] == [["pkg.a", "pkg.sub.b"]]
    assert [e.source for e in _forbidden(edges, ("pkg.c",), "pkg.train")] == ["pkg.c"]


def test_tasks_package_sits_between_data_models_and_train():
    """gau_jax/tasks builds on data and models and is used by train: data, models and layers
    never import it, and it never imports train, pretrained, convert or experiments."""
    edges = import_graph()
    bad = _forbidden(edges, ("gau_jax.data", "gau_jax.models", "gau_jax.layers"), "gau_jax.tasks")
    bad += [e for target in ("gau_jax.train", "gau_jax.pretrained", "gau_jax.convert",
                             "experiments") for e in _forbidden(edges, ("gau_jax.tasks",), target)]
    assert not bad, _report("gau_jax/tasks imports from above it, or is imported from below:", bad)


# A branch on a task kind or a task name: `.kind ==` / `!=` / `in`, a comparison or membership
# test against a quoted kind or CLUE task name, or a dict keyed by kind names.
_KINDS = ("classification", "multiple_choice", "idiom_cloze", "span", "entities", "ner",
          "global_pointer")
_NAMES = ("afqmc", "tnews", "iflytek", "cmnli", "ocnli", "cluewsc2020", "csl", "cmrc2018", "c3",
          "chid", "chid_fewclue", "cluener", "sentiment", "jsonl")
_QUOTED = "|".join(_KINDS + _NAMES)
DISPATCH = re.compile(
    rf"(==|!=|\bin\b)\s*[\(\[\{{]?\s*[\"'](?:{_QUOTED})[\"']"   # == "c3", in ("c3", ...
    rf"|[\"'](?:{_QUOTED})[\"']\s*(==|!=)"                       # "c3" == task
    rf"|\{{\s*[\"'](?:{'|'.join(_KINDS)})[\"']\s*:"               # {"span": ...}
    r"|\.kind\s*(==|!=|\bin\b|\bnot in\b)")                          # spec.kind == ...
NOT_KINDS = re.compile(r"\.format\b|\.layer\b")  # file layouts, head layers: not task kinds


def dispatch_sites(root: Path = ROOT) -> list[str]:
    """file:line of every branch on a task kind or name outside gau_jax/tasks and the task
    table (gau_jax/data/tasks.py), in gau_jax/, configs/ and experiments/."""
    out = []
    for folder in ("gau_jax", "configs", "experiments"):
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel.startswith("gau_jax/tasks/") or rel == "gau_jax/data/tasks.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                code = line.split("#", 1)[0]
                if DISPATCH.search(code) and not NOT_KINDS.search(code):
                    out.append(f"{rel}:{n}: {line.strip()}")
    return out


def test_nothing_outside_the_task_package_branches_on_a_task_kind_or_name():
    sites = dispatch_sites()
    assert not sites, "branches on a task kind / name outside gau_jax/tasks:\n" + "\n".join(sites)


def test_dispatch_check_catches_planted_branches(tmp_path):
    """The grep above would see each way such a branch is written."""
    for line in ('if spec.kind == "span":', 'if task in ("c3", "chid"):', 'if name == "cluener":',
                 'M = {"classification": "accuracy", "span": "em"}', 'if "c3" == task:',
                 "if kind != 'multiple_choice':"):
        (tmp_path / "gau_jax").mkdir(exist_ok=True)
        (tmp_path / "gau_jax" / "x.py").write_text(line + "\n")
        for folder in ("configs", "experiments"):
            (tmp_path / folder).mkdir(exist_ok=True)
        assert dispatch_sites(tmp_path), line
    (tmp_path / "gau_jax" / "x.py").write_text('if config.stage == "pretrain":\n')
    assert not dispatch_sites(tmp_path)
