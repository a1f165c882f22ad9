"""Reading Python modules without importing them.

`frame convert`, `frame check` and `frame which` must answer "where is `Adam`?"
and "does `UNet` take `channels`?" in well under a second, so they read source
files with `ast` instead of importing torch (2.6 s), torchvision (4.7 s) or
MONAI (7.5 s). This module knows just enough of Python's import rules for that:
top-level `class`/`def`/assignments, `from x import a as b` (relative too),
`from x import *` (honouring `__all__`), `del`, and the statements inside
top-level `if`/`try` blocks (both branches). Anything it cannot follow
(compiled modules, dynamic `__getattr__`, computed `__all__`) yields `None`,
and callers fall back to a real import.
"""

import ast
import importlib.util
import inspect
from dataclasses import dataclass, field
from pathlib import Path

_MAX_DEPTH = 12  # re-export chains and base classes followed at most this deep


@dataclass(frozen=True)
class ModuleFile:
    name: str  # dotted module name
    path: Path | None  # the .py file; None for a namespace package
    is_package: bool
    search: tuple[Path, ...]  # where its submodules live (packages only)


@dataclass(frozen=True)
class Found:
    """A name's definition: `node` is an ast.ClassDef, ast.FunctionDef or ast.Assign."""

    module: ModuleFile
    name: str
    node: ast.AST

    @property
    def line(self) -> int:
        return getattr(self.node, "lineno", 0)

    @property
    def where(self) -> str:
        return f"{self.module.path}:{self.line}"


@dataclass
class Param:
    name: str
    required: bool
    keyword: bool = True  # False for positional-only
    positional: bool = True  # False for keyword-only (and for keywords that `**kwargs` passes on)


@dataclass
class Signature:
    params: list[Param] = field(default_factory=list)
    var_keyword: bool = False  # **kwargs: any keyword is accepted

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params if p.keyword]


def inspect_signature(obj) -> Signature | None:
    """The signature of an imported callable (a class: its constructor); None when Python cannot tell."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    params, var_keyword = [], False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_keyword = True
        elif p.kind is not p.VAR_POSITIONAL:
            params.append(Param(p.name, p.default is p.empty, p.kind is not p.POSITIONAL_ONLY))
    return Signature(params, var_keyword)


# ---- finding files ----------------------------------------------------------------------------


def module_file(dotted: str) -> ModuleFile | None:
    """The source of module `dotted`, found without importing it or its parents."""
    top, *rest = dotted.split(".")
    if not top.isidentifier():
        return None
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: finders only, nothing is imported
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    search = tuple(Path(p) for p in (spec.submodule_search_locations or ()))
    origin = Path(spec.origin) if spec.origin and spec.origin not in ("built-in", "frozen") else None
    if origin is not None and origin.suffix != ".py":
        return None  # compiled: nothing to read
    current = ModuleFile(top, origin, bool(search), search)
    for part in rest:
        current = _submodule(current, part)
        if current is None:
            return None
    return current


def _submodule(parent: ModuleFile, part: str) -> ModuleFile | None:
    name = f"{parent.name}.{part}"
    for directory in parent.search:
        if (directory / part / "__init__.py").is_file():
            return ModuleFile(name, directory / part / "__init__.py", True, (directory / part,))
        if (directory / f"{part}.py").is_file():
            return ModuleFile(name, directory / f"{part}.py", False, ())
        if (directory / part).is_dir() and not any((directory / part).glob("__init__.*")):
            return ModuleFile(name, None, True, (directory / part,))  # namespace package (e.g. a project's src/)
    return None


def file_module(path: Path, name: str) -> ModuleFile:
    """A ModuleFile for a file whose dotted name the caller knows (the project's own files)."""
    return ModuleFile(name, path, path.name == "__init__.py", (path.parent,) if path.name == "__init__.py" else ())


# ---- reading one module ---------------------------------------------------------------------------


@dataclass
class _Namespace:
    """Top-level bindings of one module, in the order a reader would see them."""

    bindings: dict[str, tuple] = field(
        default_factory=dict
    )  # name -> ("def", node) | ("from", mod, attr) | ("alias", name) | ("value", node) | ("module", mod)
    stars: list[str] = field(default_factory=list)  # modules imported with *
    all: list[str] | None = None  # a literal __all__


_CACHE: dict[tuple[Path, int], _Namespace] = {}


def parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None


def namespace(module: ModuleFile) -> _Namespace | None:
    if module.path is None:
        return _Namespace()  # namespace package: only submodules
    try:
        key = (module.path, module.path.stat().st_mtime_ns)
    except OSError:
        return None
    if key not in _CACHE:
        tree = parse(module.path)
        if tree is None:
            return None
        _CACHE[key] = _read(tree, module)
    return _CACHE[key]


def _read(tree: ast.Module, module: ModuleFile) -> _Namespace:
    ns = _Namespace()
    for node in _top_level(tree.body):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            ns.bindings[node.name] = ("def", node)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node.module, node.level)
            if source is None:
                continue
            for alias in node.names:
                if alias.name == "*":
                    ns.stars.append(source)
                else:
                    ns.bindings[alias.asname or alias.name] = ("from", source, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    ns.bindings[alias.asname] = ("module", alias.name)
                else:
                    top = alias.name.split(".")[0]
                    ns.bindings[top] = ("module", top)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if "__all__" in names:
                ns.all = _literal_strings(node.value, ns.all if isinstance(node, ast.AugAssign) else None)
                continue
            for name in names:
                if isinstance(node.value, ast.Name) and node.value.id != name:
                    ns.bindings[name] = ("alias", node.value.id)
                elif node.value is not None:
                    ns.bindings[name] = ("value", node)
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    ns.bindings.pop(target.id, None)
    return ns


def _top_level(body):
    """Top-level statements, descending into if/try blocks (both branches)."""
    for node in body:
        if isinstance(node, ast.If):
            yield from _top_level(node.body)
            yield from _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            yield from _top_level(node.body)
            for handler in node.handlers:
                yield from _top_level(handler.body)
            yield from _top_level(node.orelse)
            yield from _top_level(node.finalbody)
        else:
            yield node


def _absolute(module: ModuleFile, target: str | None, level: int) -> str | None:
    if level == 0:
        return target
    parts = module.name.split(".")
    if not module.is_package:
        parts = parts[:-1]
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _literal_strings(value, start):
    try:
        items = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        return None
    return list(start or []) + list(items)


# ---- names ----------------------------------------------------------------------------------------


def exported_names(dotted: str, _depth: int = 0) -> set[str] | None:
    """Public names of module `dotted`: what it defines, re-exports from its own package, or lists in `__all__`.

    Submodules and names imported from other packages (`typing.Callable`) are left out.
    None when the module cannot be read (not installed, compiled, unparsable).
    """
    module = module_file(dotted)
    ns = namespace(module) if module else None
    if ns is None or _depth > _MAX_DEPTH:
        return None
    top = dotted.split(".")[0]
    names = set(ns.all or ())
    for name, binding in ns.bindings.items():
        if binding[0] in ("def", "value", "alias"):
            names.add(name)
        elif binding[0] == "from" and binding[1].split(".")[0] == top and not _is_submodule(module, name, binding):
            names.add(name)
    for star in ns.stars:
        names |= star_names(star, _depth + 1) or set()
    return {n for n in names if not n.startswith("_")}


def star_names(dotted: str, _depth: int = 0) -> set[str] | None:
    """What `from dotted import *` binds."""
    module = module_file(dotted)
    ns = namespace(module) if module else None
    if ns is None:
        return None
    if ns.all is not None:
        return set(ns.all)
    return exported_names(dotted, _depth)


def defined_names(module: ModuleFile) -> dict[str, ast.AST]:
    """Classes and functions defined (not imported) at the top of `module`."""
    ns = namespace(module)
    if ns is None:
        return {}
    return {n: b[1] for n, b in ns.bindings.items() if b[0] == "def" and not n.startswith("_")}


def _is_submodule(module: ModuleFile, name: str, binding: tuple) -> bool:
    if binding[0] != "from" or not module.is_package:
        return False
    source, attr = binding[1], binding[2]
    return source == module.name and attr == name and _submodule(module, name) is not None


def locate(dotted: str) -> Found | None:
    """The definition behind a dotted path such as `torch.optim.Adam`, following re-exports."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = module_file(".".join(parts[:cut]))
        if module is not None:
            found = lookup(module, parts[cut])
            for attr in parts[cut + 1 :]:  # a nested class, e.g. pkg.mod.Outer.Inner
                found = _member(found, attr) if found else None
            return found
    return None


def lookup(module: ModuleFile, name: str, _depth: int = 0) -> Found | None:
    """Where `module.name` is defined, or None."""
    ns = namespace(module)
    if ns is None or _depth > _MAX_DEPTH:
        return None
    binding = ns.bindings.get(name)
    if binding is None:
        for star in reversed(ns.stars):
            exported = star_names(star)
            if exported and name in exported:
                source = module_file(star)
                return lookup(source, name, _depth + 1) if source else None
        return None
    kind = binding[0]
    if kind in ("def", "value"):
        return Found(module, name, binding[1])
    if kind == "alias":
        return lookup(module, binding[1], _depth + 1)
    if kind == "from":
        source, attr = binding[1], binding[2]
        if source == module.name and attr == name:
            return None  # `from . import x`: a submodule
        source_file = module_file(source)
        return lookup(source_file, attr, _depth + 1) if source_file else None
    return None


def _member(found: Found, name: str) -> Found | None:
    if not isinstance(found.node, ast.ClassDef):
        return None
    for node in found.node.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name:
            return Found(found.module, f"{found.name}.{name}", node)
    return None


def resolve_expression(module: ModuleFile, expr: ast.AST) -> Found | None:
    """What a name or attribute expression written in `module` refers to (a base class, say)."""
    if isinstance(expr, ast.Subscript):  # Generic[T], nn.ModuleList[...]
        expr = expr.value
    if isinstance(expr, ast.Name):
        ns = namespace(module)
        binding = ns.bindings.get(expr.id) if ns else None
        if binding and binding[0] == "module":
            return None
        return lookup(module, expr.id)
    if isinstance(expr, ast.Attribute):
        path = _dotted(expr)
        if path is None:
            return None
        head, _, rest = path.partition(".")
        ns = namespace(module)
        binding = ns.bindings.get(head) if ns else None
        if binding is None:
            return None
        if binding[0] == "module":
            return locate(f"{binding[1]}.{rest}")
        if binding[0] == "from":  # `from torch import nn` then `nn.Module`
            return locate(f"{binding[1]}.{binding[2]}.{rest}")
    return None


def _dotted(expr: ast.AST) -> str | None:
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        head = _dotted(expr.value)
        return f"{head}.{expr.attr}" if head else None
    return None


# ---- signatures -----------------------------------------------------------------------------------

# Bases whose constructor adds no parameters of its own.
_NEUTRAL_BASES = {"object", "ABC", "Generic", "Protocol", "NamedTuple"}


def signature(found: Found, _depth: int = 0) -> Signature | None:
    """The constructor (class) or call (function) signature, without `self`; None when unknown."""
    node = found.node
    if _depth > _MAX_DEPTH:
        return None
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return _with_forwarded(found, node, None, _depth)
    if not isinstance(node, ast.ClassDef):
        return None
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            return _with_forwarded(found, item, found, _depth)
    if any(_decorator_name(d) == "dataclass" for d in node.decorator_list):
        return _dataclass_fields(node)
    return _inherited(found, _depth)


def _inherited(cls: Found, depth: int) -> Signature | None:
    """The constructor a class without its own `__init__` gets from its bases."""
    for base in cls.node.bases:
        if isinstance(base, ast.Name) and base.id in _NEUTRAL_BASES:
            continue
        parent = resolve_expression(cls.module, base)
        if parent is None:
            return None  # cannot see the inherited constructor
        inherited = signature(parent, depth + 1)
        if inherited is not None or isinstance(parent.node, ast.ClassDef):
            return inherited
    return Signature()  # object.__init__


def _with_forwarded(found: Found, function: ast.FunctionDef, owner: Found | None, depth: int) -> Signature:
    """`function`'s parameters (`owner`: the class whose `__init__` it is); when its `**kwargs` go on
    to callables read here (`return _resnet(block, layers, **kwargs)`, `super().__init__(**kwargs)`),
    their keyword parameters instead of "any keyword", so a misspelt one is caught before a run."""
    sig = _from_args(function.args, drop_first=owner is not None)
    extra = _forwarded(found, function, owner, depth) if function.args.kwarg is not None else None
    if extra is None:
        return sig
    names = set(sig.names)
    for param in extra:
        if param.name not in names:
            names.add(param.name)
            sig.params.append(param)
    sig.var_keyword = False
    return sig


def _forwarded(found: Found, function: ast.FunctionDef, owner: Found | None, depth: int) -> list[Param] | None:
    """The keywords `function`'s `**kwargs` can hold: the free keyword parameters of each call it is
    passed on to with `**`, and the names written as strings where it is read (`kwargs.pop("x")`,
    `kwargs["x"]`, `"x" in kwargs`, `helper(kwargs, "x", ...)`) or in a decorator's call (torchvision's
    `handle_legacy_interface` takes `pretrained` for `weights`). None (any keyword) when it goes
    nowhere, or anywhere this cannot read: a callee that is unreadable or takes `**` itself, a
    reassignment, `self.options = kwargs`, `for key in kwargs`, ..."""
    name = function.args.kwarg.arg
    parents = {child: parent for parent in ast.walk(function) for child in ast.iter_child_nodes(parent)}
    params, calls = [], 0
    for node in ast.walk(function):
        if not (isinstance(node, ast.Name) and node.id == name):
            continue
        use = parents[node]
        if isinstance(use, ast.keyword) and use.arg is None:  # f(..., **kwargs)
            call = parents[use]
            callee = _callee(found, call.func, owner, depth)
            if callee is None or callee.var_keyword:
                return None
            taken = 0 if any(isinstance(a, ast.Starred) for a in call.args) else len(call.args)
            filled = [p.name for p in callee.params if p.positional][:taken]  # by the call's own arguments
            given = {k.arg for k in call.keywords if k.arg} | set(filled)
            params += [_passed_on(p.name) for p in callee.params if p.keyword and p.name not in given]
            calls += 1
        elif isinstance(node.ctx, ast.Load) and (read := _read_by_name(use, node, parents)) is not None:
            params += [_passed_on(key) for key in _strings(read)]
        else:
            return None
    if not calls:
        return None
    decorators = [d for d in function.decorator_list if isinstance(d, ast.Call)]
    return params + [_passed_on(key) for d in decorators for key in _strings(d)]


def _passed_on(name: str) -> Param:
    return Param(name, required=False, positional=False)


def _read_by_name(use: ast.AST, name: ast.Name, parents: dict) -> list[ast.AST] | None:
    """The expressions that may name the keys `name` (a `**kwargs` dict) is read with here, or None."""
    if isinstance(use, ast.Subscript) and use.value is name:
        return [use.slice]
    if isinstance(use, ast.Compare) and all(isinstance(op, (ast.In, ast.NotIn)) for op in use.ops):
        return [use.left]
    if isinstance(use, ast.Attribute) and isinstance(parents.get(use), ast.Call) and parents[use].func is use:
        return parents[use].args  # kwargs.pop("x"), kwargs.get("x", 1)
    if isinstance(use, ast.Call) and name in use.args:
        return use.args  # _ovewrite_named_param(kwargs, "num_classes", ...)  # pyright: ignore[reportReturnType]
    return None


def _strings(nodes) -> list[str]:
    """The identifiers among string literals (`nodes`, or everything under one node)."""
    nodes = ast.walk(nodes) if isinstance(nodes, ast.AST) else nodes
    return [
        n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier()
    ]


def _callee(found: Found, func: ast.AST, owner: Found | None, depth: int) -> Signature | None:
    """The signature of what a call inside `found` calls: `super().__init__` (in `owner`), or a name."""
    if (
        owner is not None
        and isinstance(func, ast.Attribute)
        and func.attr == "__init__"
        and isinstance(func.value, ast.Call)
        and _dotted(func.value.func) == "super"
    ):
        return _inherited(owner, depth + 1)
    target = resolve_expression(found.module, func)
    return signature(target, depth + 1) if target is not None else None


def _from_args(args: ast.arguments, drop_first: bool) -> Signature:
    positional = [(a, False) for a in args.posonlyargs] + [(a, True) for a in args.args]
    defaults_from = len(positional) - len(args.defaults)
    params = [Param(a.arg, i < defaults_from, keyword) for i, (a, keyword) in enumerate(positional)]
    if drop_first and params:
        params = params[1:]
    params += [Param(a.arg, d is None, positional=False) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    return Signature(params, var_keyword=args.kwarg is not None)


def _dataclass_fields(node: ast.ClassDef) -> Signature:
    params = []
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            if "ClassVar" in ast.unparse(item.annotation):
                continue
            params.append(Param(item.target.id, item.value is None))
    return Signature(params)


def _decorator_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        node = node.func
    path = _dotted(node)
    return path.rsplit(".", 1)[-1] if path else None


def class_literal(found: Found, attribute: str):
    """The literal value of a class attribute (e.g. a dataset's `LABELS`), or None."""
    if not isinstance(found.node, ast.ClassDef):
        return None
    for item in found.node.body:
        if isinstance(item, (ast.Assign, ast.AnnAssign)):
            targets = item.targets if isinstance(item, ast.Assign) else [item.target]
            if any(isinstance(t, ast.Name) and t.id == attribute for t in targets) and item.value is not None:
                value = item.value
                if isinstance(value, ast.Name):  # LABELS = ORGANS, a module-level constant
                    bound = lookup(found.module, value.id)
                    value = getattr(bound.node, "value", None) if bound else None
                try:
                    return ast.literal_eval(value) if value is not None else None
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    return None
    return None
