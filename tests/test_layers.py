"""The import contract: layers only import downwards, function-level imports included,
the config layer never imports torch, and no group of modules imports itself in a circle."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# lowest first: each package of frame/ is one layer's room (a module belongs to the longest prefix it matches)
LAYERS = {
    "base": ["frame.core", "frame.compat"],
    "config": ["frame.config"],
    "runtime": ["frame.data", "frame.tracking", "frame.training"],
    "after training": ["frame.trained"],
    "orchestration": ["frame.launch"],
    "entry": ["frame.__main__", "frame.cli", "hydra_plugins.frame_launchers"],
}
PACKAGE = "frame"  # frame/__init__.py: the public API (Runner, load_model, old import paths), entry layer
RANK = {layer: i for i, layer in enumerate(LAYERS)}
HEAVY = ("torch", "torchvision", "monai", "wandb", "numpy")  # never in the config layer, not even lazily


def modules() -> dict[str, Path]:
    found = {}
    for path in [*REPO.glob("frame/**/*.py"), *REPO.glob("hydra_plugins/frame_launchers/*.py")]:
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def layer_of(module: str) -> str:
    if module == PACKAGE:
        return "entry"
    matches = [
        (len(prefix), layer)
        for layer, prefixes in LAYERS.items()
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer: add it to LAYERS"
    return max(matches)[1]


def imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import statement in the file, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]  # a submodule, or a name in base
    return found


def internal_edges() -> dict[str, set[str]]:
    """module -> the frame modules it imports (a `from X import name` counts as X unless X.name is a module)."""
    known = modules()
    edges = {}
    for name, path in known.items():
        targets = set()
        for imported, _ in imports(name, path):
            while imported and imported not in known:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        edges[name] = targets
    return edges


def test_every_import_points_down_or_sideways():
    wrong = [
        f"{source} ({layer_of(source)}) imports {target} ({layer_of(target)})"
        for source, targets in internal_edges().items()
        for target in targets
        if RANK[layer_of(target)] > RANK[layer_of(source)]
    ]
    assert not wrong, "imports that point up a layer:\n" + "\n".join(sorted(wrong))


def test_the_config_layer_imports_no_torch():
    """Nor does the base layer, but for the compat module of a heavy dependency itself (frame.compat.torch),
    which only the runtime layers import."""
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {imported}"
        for name, path in modules().items()
        if layer_of(name) in ("base", "config")
        for imported, line in imports(name, path)
        if _heavy(imported) and name != f"frame.compat.{imported.split('.')[0]}"
    ]
    assert not wrong, "\n".join(wrong)


def _heavy(imported: str) -> bool:
    parts = imported.split(".")
    return parts[0] in HEAVY or (parts[:2] == ["frame", "compat"] and len(parts) > 2 and parts[2] in HEAVY)


def test_no_modules_import_each_other_in_a_circle():
    edges = internal_edges()
    knots = [knot for knot in _strongly_connected(edges) if len(knot) > 1]
    assert not knots, "import cycles: " + "; ".join(" <-> ".join(sorted(k)) for k in knots)


@pytest.mark.parametrize(
    "edges, knot",
    [
        ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, {"a", "b"}),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, {"a", "b", "c"}),
    ],
)
def test_the_cycle_finder_finds_cycles(edges, knot):
    assert knot in [set(k) for k in _strongly_connected(edges)]


def test_an_upward_import_would_be_caught():
    assert (
        RANK[layer_of("frame.cli.json_jobs")] > RANK[layer_of("frame.config.check")]
    )  # check importing the CLI is wrong
    assert layer_of("frame.config.check") == "config" and layer_of("frame.launch.corridor") == "orchestration"
    assert layer_of("frame.launch.json_jobs") == "orchestration" and layer_of("frame") == "entry"


def test_every_module_lives_in_its_layers_folder():
    """No module of frame sits loose beside the packages: the folder tree is the layer table."""
    loose = [
        name
        for name in modules()
        if name.count(".") == 1
        and name.startswith("frame.")
        and name not in ("frame.__main__",)
        and not (REPO / name.replace(".", "/")).is_dir()
    ]
    assert not loose, f"modules outside the layer packages: {loose}"


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
    return found
