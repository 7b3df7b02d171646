"""Tool packages in the sandbox: own modules importing each other, tool classes held as objects, and the
per-Toolbox precision contexts (``decimal.getcontext()``, ``mpmath``) real suites' code uses."""

from __future__ import annotations

import decimal
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.sandbox import Toolbox, ToolObject, ToolSourceError, compile_tool_source
from toolgym.sandbox.precision import MAX_DECIMAL_PREC, available

DATA = "LIMITS = {'max': 3}\nNAMES = ['a', 'b']\n"
STORE = """
import subprocess
from copy import deepcopy
from pkg.data import LIMITS, NAMES


class Store:
    def __init__(self):
        self.items = {}
        self._log = []

    def _load_scenario(self, config, long_context=False):
        self.items = deepcopy(config.get("items", {}))

    def put(self, key: str, value: int) -> dict:
        if len(self.items) >= LIMITS["max"]:
            return {"error": "full"}
        self.items[key] = value
        self._log.append(key)
        return {"ok": key}

    def get(self, key: str) -> dict:
        return {"value": self.items.get(key)}

    def _secret(self):
        return "private"

    def __eq__(self, other):
        return isinstance(other, Store) and self.items == other.items
"""
PKG = {"pkg.data": DATA, "pkg.store": STORE}


def test_own_modules_import_each_other_and_classes_become_objects() -> None:
    tb = Toolbox({}, modules=PKG)
    a = tb.instantiate("pkg.store", "Store")
    assert isinstance(a, ToolObject) and a.class_name == "Store"
    tb.invoke(a, "_load_scenario", {"items": {"x": 1}})
    assert tb.call_method(a, "put", {"key": "y", "value": 2}).output == '{"ok": "y"}'
    assert tb.call_method(a, "put", {"key": "z", "value": 3}).output == '{"ok": "z"}'
    assert tb.call_method(a, "put", {"key": "w", "value": 4}).output == '{"error": "full"}'
    b = tb.instantiate("pkg.store", "Store")
    assert tb.differences(a, b) == ["items"]
    tb.invoke(b, "_load_scenario", {"items": {"x": 1, "y": 2, "z": 3}})
    assert tb.differences(a, b) == []
    assert tb.describe(a) == {"items": '{"x": 1, "y": 2, "z": 3}'}
    assert len(tb.describe(a, limit=8)["items"]) <= 8


def test_methods_of_stdlib_bases_are_not_tools() -> None:
    src = "import string\nclass T(string.Template):\n    def own(self):\n        return self.template\n"
    tb = Toolbox({}, modules={"m": src})
    t = tb.instantiate("m", "T", "$x")
    assert tb.call_method(t, "own", {}).output == "$x"
    for name in ("substitute", "safe_substitute", "get_identifiers", "pattern"):
        with pytest.raises(KeyError):
            tb.call_method(t, name, {})


def test_private_and_missing_methods_are_not_tools() -> None:
    tb = Toolbox({}, modules=PKG)
    a = tb.instantiate("pkg.store", "Store")
    for name in ("_secret", "__init__", "__eq__", "nope", "items", "__class__", "", "_load_scenario"):
        with pytest.raises(KeyError):
            tb.call_method(a, name, {})
    out = tb.call_method(a, "put", {"key": "k"})
    assert not out.ok and out.error == "bad_arguments"
    with pytest.raises(ToolSourceError, match="no class 'Nope'"):
        tb.instantiate("pkg.store", "Nope")
    with pytest.raises(ToolSourceError, match="no class 'LIMITS'"):
        tb.instantiate("pkg.data", "LIMITS")  # not a class
    with pytest.raises(ToolSourceError, match=r"Store._load_scenario\(\) failed: AttributeError"):
        tb.invoke(a, "_load_scenario", None)


def test_package_module_data_is_writable_as_in_plain_python_but_tool_sources_stay_read_only() -> None:
    src = "from pkg.data import NAMES\nclass C:\n    def grow(self):\n        NAMES.append('c')\n        return NAMES\n"
    tb = Toolbox({}, modules={**PKG, "pkg.c": src})
    c = tb.instantiate("pkg.c", "C")
    assert tb.call_method(c, "grow", {}).output == '["a", "b", "c"]'
    assert tb.call_method(tb.instantiate("pkg.c", "C"), "grow", {}).output == '["a", "b", "c", "c"]'
    assert Toolbox({}, modules={**PKG, "pkg.c": src}).call_method(c, "grow", {}).ok  # a new Toolbox: fresh data
    own = "NAMES = ['a']\ndef f():\n    NAMES.append('b')\n    return NAMES\n"
    out = Toolbox({"f": own}).call("f", {})
    assert not out.ok and "read-only" in out.output


def test_unused_import_outside_the_allow_list_binds_an_inert_stand_in_in_packages_only() -> None:
    use = "import subprocess\nclass C:\n    def run(self):\n        return eval('subprocess.run')('ls')\n"
    tb = Toolbox({}, modules={"m": use})
    out = tb.call_method(tb.instantiate("m", "C"), "run", {})
    assert not out.ok and "import of 'subprocess' is not allowed" in out.output
    with pytest.raises(ToolSourceError, match="import of 'subprocess' is not allowed"):
        Toolbox({}, modules={"m": "import subprocess\ndef f():\n    return subprocess.run\n"})
    with pytest.raises(ToolSourceError, match="import of 'subprocess' is not allowed"):
        Toolbox({"f": "import subprocess\ndef f():\n    return 1\n"})  # a tool source: strict
    with pytest.raises(ToolSourceError, match="import of 'os' is not allowed"):
        compile_tool_source("from os import system\nx = system\n", package=True)
    # a name read only inside annotations is never looked up (they stay text)
    compile_tool_source("from pathlib import Path\ndef f(p: Path) -> Path:\n    return 1\n", package=True)


def test_own_module_errors_name_the_module() -> None:
    with pytest.raises(ToolSourceError, match=r"module 'pkg\.bad': module code failed: ZeroDivisionError"):
        Toolbox({}, modules={"pkg.bad": "x = 1 / 0\n"})
    with pytest.raises(ToolSourceError, match=r"module 'pkg\.bad'.*import of 'os'"):
        Toolbox({}, modules={"pkg.bad": "import os\nos.getcwd()\n"})
    with pytest.raises(ToolSourceError, match=r"import of 'pkg\.data' is not allowed"):
        Toolbox({"f": "from pkg.data import NAMES\ndef f():\n    return NAMES\n"})  # not one of modules=


def test_tools_can_import_own_modules() -> None:
    tb = Toolbox({"f": "import pkg.data\ndef f():\n    return pkg.data.NAMES\n"}, modules=PKG)
    assert tb.call("f", {}).output == '["a", "b"]'


def test_decimal_context_is_the_toolboxs_own_and_bounded() -> None:
    src = (
        "from decimal import Decimal, getcontext\n"
        "def f(p):\n    getcontext().prec = p\n    return str(Decimal(2).sqrt())\n"
        "def g():\n    return str(Decimal(1) / Decimal(3))\n"
    )
    before = decimal.getcontext().prec
    a, b = Toolbox({"f": src, "g": src}), Toolbox({"g": src})
    assert a.call("f", {"p": 50}).output == str(decimal.Context(prec=50).sqrt(decimal.Decimal(2)))
    assert decimal.getcontext().prec == before  # the caller's context is untouched
    assert a.call("g", {}).output == str(decimal.Context(prec=50).divide(1, 3))  # kept across the Toolbox's calls
    assert b.call("g", {}).output == str(decimal.Context(prec=28).divide(1, 3))  # another Toolbox: default
    out = a.call("f", {"p": MAX_DECIMAL_PREC + 1})
    assert not out.ok and "decimal precision (digits) is limited" in out.output
    assert decimal.getcontext().prec == before


def test_decimal_context_is_per_thread_caller() -> None:
    src = (
        "from decimal import Decimal, getcontext\ndef f():\n    getcontext().prec = 5\n    return str(Decimal(1) / 3)\n"
    )
    seen: list[str] = []

    def run() -> None:
        seen.append(Toolbox({"f": src}).call("f", {}).output)
        seen.append(str(decimal.getcontext().prec))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen == ["0.33333", "28"]


@pytest.mark.skipif(not available(), reason="mpmath is a dev dependency (torch's sympy); it is optional at run time")
def test_mpmath_is_a_per_toolbox_context_with_bounded_precision() -> None:
    import mpmath

    src = (
        "import mpmath\n"
        "def log(v, b, p):\n    mpmath.mp.dps = p\n    return str(mpmath.log(v) / mpmath.log(b))\n"
        "def pi():\n    return str(mpmath.pi)\n"
        "def ctx():\n    return mpmath.mpf(1).context\n"
        "def fixed():\n    return mpmath.mpf(1).to_fixed(10**9)\n"
        "def call_pi():\n    return mpmath.pi(dps=10**7)\n"
    )
    before = mpmath.mp.dps
    tb = Toolbox(dict.fromkeys(("log", "pi", "ctx", "fixed", "call_pi"), src))
    mp = mpmath.MPContext()
    mp.dps = 40
    assert tb.call("log", {"v": 7, "b": 3, "p": 40}).output == str(mp.log(7) / mp.log(3))
    assert tb.call("pi", {}).output == str(mp.pi)  # the constant at the Toolbox's precision
    assert mpmath.mp.dps == before
    assert "mpmath precision (digits) is limited to 1000" in tb.call("log", {"v": 7, "b": 3, "p": 10**6}).output
    for name in ("ctx", "fixed"):
        out = tb.call(name, {})
        assert not out.ok and "is not allowed" in out.output, out
    assert not tb.call("call_pi", {}).ok  # a value, not the lazy constant: nothing takes a precision


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=-(10**12), max_value=10**12), st.integers(min_value=1, max_value=60))
def test_decimal_results_equal_plain_python(n: int, prec: int) -> None:
    src = "from decimal import Decimal, getcontext\ndef f(n, p):\n    getcontext().prec = p\n"
    src += "    return str(Decimal(n) / 7)"
    assert Toolbox({"f": src}).call("f", {"n": n, "p": prec}).output == str(decimal.Context(prec=prec).divide(n, 7))


@pytest.mark.parametrize(
    "store",
    [
        "state['t'] = (P(),)",
        "state['l'] = [1, (2, (P(),))]",
        "state['k'] = {(1, P()): 1}",
        "state['f'] = [frozenset([P()])]",
    ],
)
def test_tool_instances_hidden_in_tuples_and_sets_never_stay_in_the_world(store: str) -> None:
    cls = "class P:\n    def __eq__(self, o):\n        while True:\n            pass\n"
    cls += "    def __hash__(self):\n        return 1\n"
    src = f"{cls}def f():\n    {store}\n    return 1\n"
    world: dict = {"keep": [1, 2]}
    out = Toolbox({"f": src}).call("f", {}, world)
    assert not out.ok and "plain data" in out.output
    assert world["keep"] == [1, 2] and world == world  # comparing the world runs no tool code
    assert "P object" not in repr(world)


def test_decimal_at_the_precision_bound_stays_short() -> None:
    """exp/ln/log10/power are single C calls: at the bound they must end well inside the tool time limit."""
    src = (
        "from decimal import Decimal, getcontext\n"
        f"def f():\n    getcontext().prec = {MAX_DECIMAL_PREC}\n"
        "    x = Decimal(3)\n    return str(x.exp() + x.ln() + x.log10() + x ** Decimal('0.5'))[:20]\n"
    )
    out = Toolbox({"f": src}, time_limit=2.0).call("f", {})
    assert out.ok, out.output


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.text(max_size=12), st.sampled_from(["put", "get", "_secret", "__eq__", "__init__", "__class__"])),
    st.dictionaries(st.text(max_size=6), st.one_of(st.integers(), st.text(max_size=6), st.none()), max_size=3),
)
def test_any_method_name_and_arguments_give_an_outcome_or_key_error(name: str, arguments: dict) -> None:
    """What a model can send: a call never raises but KeyError for a name that is not a public own method."""
    tb = _STORE_BOX
    ob = tb.instantiate("pkg.store", "Store")
    try:
        out = tb.call_method(ob, name, arguments)
    except KeyError:
        assert name not in ("put", "get")
    else:
        assert name in ("put", "get") and isinstance(out.output, str)


_STORE_BOX = Toolbox({}, modules=PKG)
