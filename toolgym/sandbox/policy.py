"""Compile policy: the RestrictedPython transformer for tool source and the process-wide compile cache.

Why a module: what tool code may say is decided once, at compile time, by :class:`_ToolPolicy` (underscore
names, classes and ``global`` other than ``state`` are rejected; step ticks and calls of the size guards are
written in); everything at run time (:mod:`~toolgym.sandbox.runtime`) relies on that rewrite.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from types import CodeType

from RestrictedPython import compile_restricted_exec
from RestrictedPython.transformer import RestrictingNodeTransformer

from toolgym.sandbox.attrs import _GUARDED_ATTRS

__all__ = ["ToolSourceError", "compile_tool_source"]


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


class _ToolPolicy(RestrictingNodeTransformer):
    """RestrictedPython policy plus step ticks and size guards (see the :mod:`toolgym.sandbox` docstring)."""

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self.error(node, "class definitions are not allowed in tool code.")
        return node

    def visit_Global(self, node: ast.Global) -> ast.AST:
        bad = [n for n in node.names if n != "state"]
        if bad:
            names = ", ".join(bad)
            self.error(node, f"'global {names}' is not allowed: keep data that must persist in `state`.")
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if node.attr == "__name__" and isinstance(node.ctx, ast.Load):  # harmless and common in messages
            node = self.node_contents_visit(node)
            new = _call("_getattr_", node.value, ast.Constant("__name__"))
            return ast.fix_missing_locations(ast.copy_location(new, node))
        new = super().visit_Attribute(node)
        if isinstance(node.ctx, ast.Load) and node.attr not in _GUARDED_ATTRS:
            # RestrictedPython vetted the literal name; only names with a runtime guard need _getattr_,
            # the rest stay native attribute loads (a call per attribute would double the cost of tool code).
            return node
        return new

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        if isinstance(node.ctx, ast.Load):
            return self.node_contents_visit(node)  # reading items is harmless here; stay native (fast)
        return super().visit_Subscript(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node = super().visit_FunctionDef(node)
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
        elif isinstance(target, ast.Subscript):
            # target.value was already wrapped in _write_() by visit_Subscript (Store context).
            new = ast.Expr(_call("_augitem_", target.value, target.slice, ast.Constant(op), node.value))
        else:
            self.error(node, "Augmented assignment of attributes is not allowed.")
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
        node = super().visit_Call(node)
        if isinstance(node.func, ast.Name) and node.func.id == "str":
            node.args.insert(0, node.func)
            node.func = ast.copy_location(_name("_str_call_"), node.func)
        return node


def compile_tool_source(source: str) -> CodeType:
    """Compile tool source under the sandbox policy; cached process-wide by sha256 of the text."""
    return _compile_cached(hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest(), source)


@functools.lru_cache(maxsize=4096)
def _compile_cached(digest: str, source: str) -> CodeType:
    result = compile_restricted_exec(source, filename="<tool>", policy=_ToolPolicy)
    if result.errors or result.code is None:
        raise ToolSourceError("; ".join(result.errors) or "source does not compile")
    return result.code


compile_tool_source.cache_info = _compile_cached.cache_info  # type: ignore[attr-defined]
compile_tool_source.cache_clear = _compile_cached.cache_clear  # type: ignore[attr-defined]
