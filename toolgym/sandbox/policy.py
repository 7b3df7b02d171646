"""Compile policy: the RestrictedPython transformer for tool source and the process-wide compile cache.

Why a module: what tool code may say is decided once, at compile time, by :class:`_ToolPolicy`; everything at
run time (:mod:`~toolgym.sandbox.runtime`) relies on that rewrite. Allowed: single-underscore names (not the
``_name_`` spelling of the guards) and attributes (read through ``_private_``: the tool's own objects only),
classes with the ordinary protocol methods (:data:`~toolgym.sandbox.attrs._PROTOCOL_METHODS`, read through
``_dunder_``), imports of the allow-listed modules and of the Toolbox's own modules, ``eval``/``exec``
(compiled by this same policy at run time). Refused: other dunder names and attributes, ``metaclass=``,
``global`` other than ``state``, imports of anything else (an import a package module never reads binds an
inert stand-in). Step ticks and calls of the size guards are written in.
"""

from __future__ import annotations
import __future__

import ast
import functools
import hashlib
from types import CodeType

from RestrictedPython import compile_restricted_eval, compile_restricted_exec
from RestrictedPython.transformer import RestrictingNodeTransformer

from toolgym.sandbox.attrs import _ALLOWED_MODULES, _GUARDED_ATTRS, _OPTIONAL_MODULES, _PROTOCOL_METHODS

__all__ = ["ToolSourceError", "compile_tool_code", "compile_tool_source", "def_name", "import_refused"]


class ToolSourceError(ValueError):
    """Tool source does not compile under the sandbox policy, or does not define the named tool."""


def _name(id_: str) -> ast.Name:
    return ast.Name(id=id_, ctx=ast.Load())


def _call(func: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_name(func), args=list(args), keywords=[])


def _tick_stmt(node: ast.AST) -> ast.stmt:
    stmt = ast.Expr(_call("_tick_"))
    ast.copy_location(stmt, node)
    return ast.fix_missing_locations(stmt)


_BINOP_GUARDS = {
    ast.Mult: "_mul_",
    ast.Pow: "_pow_",
    ast.LShift: "_lshift_",
    ast.Add: "_add_",
    ast.Mod: "_mod_",
}
_AUG_GUARDS = {
    ast.Add: "_iadd_",
    ast.Mult: "_imul_",
    ast.Pow: "_pow_",
    ast.LShift: "_lshift_",
    ast.Mod: "_mod_",
}
_AUG_OPS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.MatMult: "@",
}


def _is_const(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant)


def _is_number(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float, bool)


def _small_numbers(node: ast.BinOp) -> bool:
    """Both operands are small numeric literals, so the native operation is cheap (``9 / 5``, ``2 ** 10``)."""
    if not (_is_number(node.left) and _is_number(node.right)):
        return False
    a, b = abs(node.left.value), abs(node.right.value)
    if isinstance(node.op, (ast.Pow, ast.LShift)):
        return a < 1 << 16 and b <= 64
    return a < 1 << 32 and b < 1 << 32


_OPTIONAL = list(_OPTIONAL_MODULES)
_IMPORTABLE = frozenset(_ALLOWED_MODULES) | {"__future__", *_OPTIONAL_MODULES}


def import_refused(name: str) -> str:
    """The one message for a module tool code may not use, at compile time and from the runtime's stand-in."""
    return f"import of {name!r} is not allowed in tool code (allowed: {', '.join(_ALLOWED_MODULES + _OPTIONAL)})"


def _loaded_names(tree: ast.AST) -> frozenset[str]:
    """Names the code reads, annotations left out: they stay unevaluated text (``from __future__ import
    annotations`` is always on), so a name used only there is never looked up."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
                if a is not None and a.annotation is not None:
                    skip.add(id(a.annotation))
            if node.returns is not None:
                skip.add(id(node.returns))
        elif isinstance(node, ast.AnnAssign):
            skip.add(id(node.annotation))
    names: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if id(node) in skip:
            continue
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Store):
            names.add(node.id)
        stack.extend(ast.iter_child_nodes(node))
    return frozenset(names)


def _private_name(name: str) -> bool:
    """``_helper``, ``_cache``: the tool's own; ``__x`` (mangled or dunder) and ``_x_`` (the guards' spelling,
    which a tool could otherwise shadow, e.g. ``_tick_ = lambda: None``) are not."""
    return name[:1] == "_" and name[:2] != "__" and name[-1:] != "_" and name != "_print"


def def_name(tool: str) -> str:
    """The name tool code defines the tool ``tool`` under: the tool's own, unless this policy refuses to define it
    (``__x``, ``_x_``: a suite's function may be called so, e.g. BFCL's ``__get_all_user_list``), then a spelling
    it accepts, derived from the name (:class:`~toolgym.sandbox.Toolbox` looks a tool up under both)."""
    if tool[:1] != "_" or _private_name(tool):
        return tool
    return f"tool_{tool.strip('_')}_{hashlib.sha256(tool.encode()).hexdigest()[:8]}"


class _ToolPolicy(RestrictingNodeTransformer):
    """RestrictedPython policy plus step ticks and size guards (see the :mod:`toolgym.sandbox` docstring)."""

    _local_modules: frozenset[str] = frozenset()  # the Toolbox's own modules (``modules=``), importable by name
    _loaded_names: frozenset[str] | None = None  # a package module: the names it reads outside annotations
    _scopes: tuple[str, ...] = ()  # "class" / "def" nesting, to allow protocol methods only in class bodies
    _def_in_class = False  # the def being checked is directly in a class body

    def check_name(self, node: ast.AST, name: str | None, allow_magic_methods: bool = False) -> None:
        if name is not None and _private_name(name):
            return
        if allow_magic_methods and name in _PROTOCOL_METHODS and self._def_in_class:
            return
        if allow_magic_methods and name is not None and name[:1] == "_":
            self.error(node, f'"{name}" may not be defined in tool code.')
            return
        super().check_name(node, name)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id == "__name__" and isinstance(node.ctx, ast.Load):  # `if __name__ == "__main__":`
            return node
        return super().visit_Name(node)

    def visit_Import(self, node: ast.Import) -> ast.AST:
        for alias in node.names:
            self._check_module(node, alias.name)
        return super().visit_Import(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        if node.level:
            self.error(node, "relative imports are not allowed in tool code.")
        else:
            self._check_module(node, node.module or "")
        return super().visit_ImportFrom(node)

    def _check_module(self, node: ast.AST, name: str) -> None:
        if name in _IMPORTABLE or name in self._local_modules:
            return
        if isinstance(node, ast.Import):
            bound = [a.asname or a.name.partition(".")[0] for a in node.names if a.name == name]
        else:
            bound = [a.asname or a.name for a in node.names]  # type: ignore[attr-defined]
        if self._loaded_names is not None and "*" not in bound and not self._loaded_names.intersection(bound):
            return  # never used: bound to an inert stand-in whose every use raises (see the docstring)
        self.error(node, import_refused(name))

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        # Classes are built by the runtime's __build_class__ (which marks them as the tool's own and refuses
        # metaclasses), not by RestrictedPython's __metaclass__ rewrite.
        self.check_name(node, node.name)
        if any(k.arg == "metaclass" for k in node.keywords):
            self.error(node, "metaclass= is not allowed in tool code.")
        outer = self._scopes
        self._scopes = (*outer, "class")
        try:
            return self.node_contents_visit(node)
        finally:
            self._scopes = outer

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        return self.node_contents_visit(node)  # `x: int = 0` (dataclass fields); the target is checked as usual

    def visit_Global(self, node: ast.Global) -> ast.AST:
        bad = [n for n in node.names if n != "state"]
        if bad:
            names = ", ".join(bad)
            self.error(node, f"'global {names}' is not allowed: keep data that must persist in `state`.")
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        attr, load = node.attr, isinstance(node.ctx, ast.Load)
        if attr == "__name__" and load:  # harmless and common in messages
            node = self.node_contents_visit(node)
            new = _call("_getattr_", node.value, ast.Constant("__name__"))
            return ast.fix_missing_locations(ast.copy_location(new, node))
        guard = None
        if load and attr in _PROTOCOL_METHODS:
            guard = "_dunder_"  # super().__init__(...), Base.__eq__(self, other): the tool's own objects only
        elif _private_name(attr) or (attr[:1] == "_" and attr[-1:] == "_" and attr[:2] != "__"):
            guard = "_private_"  # self._files, Color._value_: the tool's own objects only
        if guard is not None:
            node = self.node_contents_visit(node)
            if load:
                new = _call(guard, node.value, ast.Constant(attr))
                return ast.fix_missing_locations(ast.copy_location(new, node))
            node.value = ast.fix_missing_locations(ast.copy_location(_call("_write_", node.value), node.value))
            return node
        new = super().visit_Attribute(node)
        if load and attr not in _GUARDED_ATTRS:
            # RestrictedPython vetted the literal name; only names with a runtime guard need _getattr_,
            # the rest stay native attribute loads (a call per attribute would double the cost of tool code).
            return node
        return new

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        if isinstance(node.ctx, ast.Load):
            return self.node_contents_visit(node)  # reading items is harmless here; stay native (fast)
        return super().visit_Subscript(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        outer = self._scopes
        self._def_in_class = outer[-1:] == ("class",)  # read by check_name(node.name) in super().visit_FunctionDef
        self._scopes = (*outer, "def")
        try:
            node = super().visit_FunctionDef(node)
        finally:
            self._scopes = outer
        node.body.insert(0, _tick_stmt(node))
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        node = super().visit_Lambda(node)
        body = ast.BoolOp(op=ast.Or(), values=[_call("_tick_"), node.body])  # _tick_() returns None
        node.body = ast.fix_missing_locations(ast.copy_location(body, node.body))
        return node

    def visit_For(self, node: ast.For) -> ast.AST:
        # Iteration itself is harmless here (no Zope-style item guards), so skip RestrictedPython's
        # per-item unpack wrappers: they cost ~0.5 us per item.
        node = self.node_contents_visit(node)
        node.body.insert(0, _tick_stmt(node))
        return node

    def visit_While(self, node: ast.While) -> ast.AST:
        node = self.node_contents_visit(node)
        node.body.insert(0, _tick_stmt(node))
        return node

    def visit_comprehension(self, node: ast.comprehension) -> ast.AST:
        node = self.node_contents_visit(node)
        tick = ast.UnaryOp(op=ast.Not(), operand=_call("_tick_"))
        node.ifs.insert(0, ast.fix_missing_locations(ast.copy_location(tick, node.iter)))
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        node = self.node_contents_visit(node)
        helper = _BINOP_GUARDS.get(type(node.op))
        if helper is None or _small_numbers(node):
            return node
        if helper == "_add_" and (_is_const(node.left) or _is_const(node.right)):
            return node  # growth by a constant per operation cannot double
        if helper == "_mod_" and _is_number(node.left):
            return node
        return ast.fix_missing_locations(ast.copy_location(_call(helper, node.left, node.right), node))

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        node = self.node_contents_visit(node)
        op = _AUG_OPS[type(node.op)]
        target = node.target
        if isinstance(target, ast.Name):
            if type(node.op) not in _BINOP_GUARDS:
                return node
            helper = _AUG_GUARDS[type(node.op)]
            new = ast.Assign(targets=[target], value=_call(helper, _name(target.id), node.value))
        elif isinstance(target, ast.Attribute):
            # target.value was already wrapped in _write_() by visit_Attribute (Store context).
            new = ast.Expr(_call("_augattr_", target.value, ast.Constant(target.attr), ast.Constant(op), node.value))
        elif isinstance(target, ast.Subscript):
            # target.value was already wrapped in _write_() by visit_Subscript (Store context).
            new = ast.Expr(_call("_augitem_", target.value, target.slice, ast.Constant(op), node.value))
        else:  # pragma: no cover - the grammar allows only names, attributes and subscripts
            self.error(node, "Augmented assignment of this target is not allowed.")
            return node
        return ast.fix_missing_locations(ast.copy_location(new, node))

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        node = self.node_contents_visit(node)
        slices = [t for t in node.targets if isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Slice)]
        if not slices:
            return node
        if len(node.targets) != 1:
            self.error(node, "Chained assignment to a slice is not allowed.")
            return node
        t = node.targets[0]
        new = ast.Expr(_call("_setslice_", t.value, t.slice, node.value))
        return ast.fix_missing_locations(ast.copy_location(new, node))

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.AST:
        node = self.node_contents_visit(node)
        spec = node.format_spec if node.format_spec is not None else ast.Constant("")
        value = _call("_fmt_", node.value, ast.Constant(node.conversion), spec)
        new = ast.FormattedValue(value=value, conversion=-1, format_spec=None)
        return ast.fix_missing_locations(ast.copy_location(new, node))

    def visit_Call(self, node: ast.Call) -> ast.AST:
        # RestrictedPython's visit_Call minus its refusal of eval/exec: the runtime's eval and exec compile
        # their text with this same policy.
        wrap = any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords)
        node = self.node_contents_visit(node)
        if wrap:
            node.args.insert(0, node.func)
            node.func = ast.copy_location(_name("_apply_"), node.args[0])
            return node
        if isinstance(node.func, ast.Name) and node.func.id == "str":
            node.args.insert(0, node.func)
            node.func = ast.copy_location(_name("_str_call_"), node.func)
        return node


# Annotations stay unevaluated text (tools annotate with names they never import), stated rather than inherited.
_FLAGS = __future__.annotations.compiler_flag


def compile_tool_source(source: str, modules: frozenset[str] = frozenset(), package: bool = False) -> CodeType:
    """Compile tool source under the sandbox policy; cached process-wide by sha256 of the text.

    ``modules`` names the Toolbox's own modules the source may import (a tool package's sibling modules,
    e.g. BFCL's classes importing its ``long_context`` data module by its dotted name). ``package``: the
    source is one of those modules, see :func:`_policy`.
    """
    digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
    return _compile_cached(digest, source, frozenset(modules), package)


def _policy(source: str, modules: frozenset[str], package: bool) -> type[_ToolPolicy]:
    """The policy class for one text: which imports it may name and, for a package module, which names it reads.

    A package module (a suite's file, imported as written: ``Toolbox(modules=...)``) may import a module
    outside the allow-list that it never reads; the import binds an inert stand-in whose every use raises the
    error a used import gets at compile time (BFCL's file system imports ``subprocess`` and never calls it).
    A tool source may not: what a model or a record writes has no reason to import what it cannot use.
    """
    loaded = None
    if package:
        try:
            loaded = _loaded_names(ast.parse(source))
        except SyntaxError:
            loaded = frozenset()  # the compile below reports it
    return type("_ToolPolicy", (_ToolPolicy,), {"_local_modules": modules, "_loaded_names": loaded})


@functools.lru_cache(maxsize=4096)
def _compile_cached(digest: str, source: str, modules: frozenset[str], package: bool) -> CodeType:
    policy = _policy(source, modules, package)
    result = compile_restricted_exec(source, filename="<tool>", flags=_FLAGS, dont_inherit=True, policy=policy)
    if result.errors or result.code is None:
        raise ToolSourceError("; ".join(result.errors) or "source does not compile")
    return result.code


def compile_tool_code(source: str, mode: str) -> CodeType:
    """Compile the text tool code passes to ``eval`` (``mode="eval"``) or ``exec`` under the same policy.

    Raises ``SyntaxError`` (what tool code expects from ``eval``) with the policy's message.
    """
    return _compile_code_cached(mode, source)


@functools.lru_cache(maxsize=4096)
def _compile_code_cached(mode: str, source: str) -> CodeType:
    compile_ = compile_restricted_eval if mode == "eval" else compile_restricted_exec
    policy = _policy(source, frozenset(), False)
    result = compile_(source, filename="<string>", flags=_FLAGS, dont_inherit=True, policy=policy)
    if result.errors or result.code is None:
        raise SyntaxError("; ".join(result.errors) or "source does not compile")
    return result.code


compile_tool_source.cache_info = _compile_cached.cache_info  # type: ignore[attr-defined]
compile_tool_source.cache_clear = _compile_cached.cache_clear  # type: ignore[attr-defined]
