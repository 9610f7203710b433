"""The direction of imports inside fastnn (docs/ARCHITECTURE.md): no module imports, directly or
through others, a module that imports it back; the backends import nothing above them.

The graph is read from the source with ast: every ``import`` and ``from ... import`` statement,
including those inside functions (an import deferred to call time still ties the two modules
together), and a name imported from a package counts as its submodule when it is one.
"""

import ast
import pathlib

import fastnn

ROOT = pathlib.Path(fastnn.__file__).parent

def _modules():
    """{module name: path} of every Python module of the package (compiled extensions aside)."""
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ("fastnn", *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name, path, modules):
    """The fastnn modules that module ``name`` (at ``path``) imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import sub` imports the submodule; `from mod import name` the module
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import fastnn.backends.cpu` from a dotted name
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def find_cycle(graph):
    """One import circle [a, b, ..., a] of ``graph``, or None (depth-first search)."""
    state = {}  # 1: on the current path, 2: done
    path = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_is_read_from_every_kind_of_import_statement():
    graph = import_graph()
    assert "fastnn.model" in graph["fastnn.trainer"]             # from .model import Sequential
    assert "fastnn.backends.cpu" in graph["fastnn"]              # inside a function: from .backends import cpu
    assert "fastnn.checkpoint" in graph["fastnn.trainer"]
    assert "fastnn._params" in graph["fastnn.optim"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_fastnn_has_no_import_circles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


#: What the backends may import besides themselves: the compiled kernels and leaf helpers.
BELOW_BACKENDS = ("fastnn._ext", "fastnn._checks", "fastnn._random", "fastnn._special", "fastnn.errors")


def _inside(name, prefixes):
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_backends_import_nothing_above_them():
    graph = import_graph()
    for helper in BELOW_BACKENDS:  # really below: they import only each other
        outside = {t for t in graph.get(helper, ()) if not _inside(t, BELOW_BACKENDS)}
        assert not outside, f"{helper} is listed below the backends but imports {sorted(outside)}"
    upward = {(name, target) for name, targets in graph.items() if _inside(name, ("fastnn.backends",))
              for target in targets if not _inside(target, ("fastnn.backends", *BELOW_BACKENDS))}
    assert not upward, f"the backends import upward: {sorted(upward)}"


def test_the_checkpoint_serializer_reads_no_private_attribute():
    # issue 12: checkpoint.py writes what the Trainer's state_dict() returns and reads it back;
    # it reaches into no object's private fields (trainer._augment_keys, opt._layer_options, ...)
    tree = ast.parse((ROOT / "checkpoint.py").read_text(encoding="utf-8"))
    private = sorted({node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                      and node.attr.startswith("_") and not node.attr.startswith("__")})
    assert private == []
