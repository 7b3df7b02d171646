"""The sandbox runs the tool code real packs contain (imports, classes, private helpers, eval, FTRL's ``data``)
and every relaxation keeps its attacks contained: each allowed construct is paired with the attacks it opens."""

from __future__ import annotations

import builtins
import json
import random
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from RestrictedPython.transformer import INSPECT_ATTRIBUTES

from toolgym.packs import PackError, load_scenarios, scenario_from_ftrl
from toolgym.sandbox import Toolbox, ToolOutcome, ToolSourceError, compile_tool_source
from toolgym.sandbox.attrs import _PROTOCOL_METHODS as _PROTOCOL_OK
from toolgym.sandbox.process import ProcessSandbox

SECRETS = ("<module", "<frame", "<code", "__builtins__", "mappingproxy", "root:", "<traceback", "<cell")

# ------------------------------------------------------------------------------------------ real tool code

REAL_TOOL = '''
from typing import Any, Dict, List, Optional
import dataclasses
import enum
import json
import math
import re
from collections import defaultdict, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field


class Status(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class Ticket:
    id: int
    title: str
    tags: List[str] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return _normalize(self.title)


class Registry:
    """A tool-side store with private state and the ordinary protocol methods."""

    def __init__(self, items: Optional[Dict[str, int]] = None):
        self._items: Dict[str, int] = dict(items or {})
        self.calls = 0

    def __len__(self):
        return len(self._items)

    def __contains__(self, key):
        return key in self._items

    def __iter__(self):
        return iter(sorted(self._items))

    def __getitem__(self, key):
        return self._items[key]

    def __eq__(self, other):
        return isinstance(other, Registry) and self._items == other._items

    def __hash__(self):
        return hash(tuple(sorted(self._items)))

    def __repr__(self):
        return f"Registry({len(self)})"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def make(**kw):
        return Registry(kw)

    @classmethod
    def empty(cls):
        return cls()

    def add(self, key, value):
        self._items[self._key(key)] = value
        self.calls += 1
        return self

    def _key(self, key):
        return key.strip().lower()


class Counted(Registry):
    def __init__(self):
        super().__init__({"a": 1})
        self._extra = True


def _normalize(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def report(name: str) -> Dict[str, Any]:
    reg = Registry.make(b=2).add(" A ", 1)
    with Counted() as c:
        counted = [k for k in c]
    t = Ticket(1, "Hello, World!", ["x"])
    groups = defaultdict(list)
    groups[Status.OPEN.value].append(t.id)
    return {
        "name": _normalize(name),
        "len": len(reg),
        "has_a": "a" in reg,
        "keys": list(reg),
        "eq": reg == Registry({"a": 1, "b": 2}),
        "repr": repr(reg),
        "calls": reg.calls,
        "counted": counted,
        "slug": t.slug,
        "ticket": dataclasses.asdict(t),
        "groups": dict(groups),
        "status": Status("closed").name,
        "mapping": isinstance(OrderedDict(), Mapping),
        "empty": len(Registry.empty()),
        "sqrt": math.sqrt(16),
        "json": json.loads(json.dumps({"k": [1, 2]})),
    }


def calculator(expression: str) -> str:
    allowed = {"sqrt": math.sqrt, "pi": math.pi}
    try:
        return str(eval(expression, {"__builtins__": None}, allowed))
    except Exception as e:
        return f"Error: {e}"


def lookup(data, user_id: str):
    """FTRL's convention: the executor passes the world as `data`."""
    user = data["users"].get(user_id)
    if user is None:
        return {"error": "unknown user"}
    data["lookups"] = data.get("lookups", 0) + 1
    return user


if __name__ == "__main__":
    print(report("x"))
'''


@pytest.fixture(scope="module")
def real() -> Toolbox:
    return Toolbox(dict.fromkeys(("report", "calculator", "lookup"), REAL_TOOL))


def test_real_tool_code_runs(real: Toolbox) -> None:
    out = real.call("report", {"name": "Foo Bar!"})
    assert out.ok, out.output
    got = json.loads(out.output)
    assert got == {
        "name": "foo-bar",
        "len": 2,
        "has_a": True,
        "keys": ["a", "b"],
        "eq": True,
        "repr": "Registry(2)",
        "calls": 1,
        "counted": ["a"],
        "slug": "hello-world",
        "ticket": {"id": 1, "title": "Hello, World!", "tags": ["x"]},
        "groups": {"open": [1]},
        "status": "CLOSED",
        "mapping": True,
        "empty": 0,
        "sqrt": 4.0,
        "json": {"k": [1, 2]},
    }


def test_calculator_eval(real: Toolbox) -> None:
    assert real.call("calculator", {"expression": "sqrt(16) + 2 ** 3 * pi / pi"}).output == "12.0"
    for attack in (
        "__import__('os').system('id')",
        "().__class__.__bases__[0].__subclasses__()",
        "[c for c in ().__class__.__base__.__subclasses__()]",
        "open('/etc/passwd').read()",
        "(lambda: 0).__globals__",
        "sqrt.__self__",
        "eval('1')",  # no builtins: eval is not there either
    ):
        out = real.call("calculator", {"expression": attack})
        assert out.ok and out.output.startswith("Error"), (attack, out)
        assert not any(s in out.output for s in SECRETS)


def test_data_parameter_receives_the_world(real: Toolbox) -> None:
    world = {"users": {"u1": {"name": "Ann"}}}
    assert real.call("lookup", {"user_id": "u1"}, world) == ToolOutcome(True, '{"name": "Ann"}', None)
    assert world["lookups"] == 1  # the same dict object, mutated in place
    assert real.call("lookup", {"user_id": "zz"}, world).output == '{"error": "unknown user"}'
    clash = real.call("lookup", {"user_id": "u1", "data": {}}, world)
    assert not clash.ok and clash.error == "bad_arguments"


def test_every_allowed_module_imports() -> None:
    from toolgym.sandbox.attrs import _ALLOWED_MODULES

    src = "\n".join(f"import {m}" for m in _ALLOWED_MODULES) + "\ndef f():\n    return 1\n"
    assert Toolbox({"f": src}).call("f", {}).output == "1"
    src = (
        "from typing import Any, Dict, List, Optional, Union, Tuple, Callable\nfrom collections.abc import Mapping\n"
        "from dataclasses import dataclass, field\nfrom enum import Enum, auto\nfrom abc import ABC, abstractmethod\n"
        "def f():\n    return 2\n"
    )
    assert Toolbox({"f": src}).call("f", {}).output == "2"


# Deterministic calls into the allowed modules, each run in the sandbox and by plain exec (see the test below).
FIRST_USE = {
    "strptime": "import datetime, time\ndef f():\n    d = datetime.datetime.strptime('2024-02-03', '%Y-%m-%d')\n"
    "    return [str(d), time.strptime('2024-02-03', '%Y-%m-%d').tm_yday, time.mktime(time.strptime('2024', '%Y'))]\n",
    "zoneinfo": "import zoneinfo, datetime\ndef f():\n    tz = zoneinfo.ZoneInfo('Europe/Paris')\n"
    "    return str(datetime.datetime(2024, 7, 2, tzinfo=tz).astimezone(datetime.timezone.utc))\n",
    "strftime": "import time, datetime, calendar\ndef f():\n"
    "    return [datetime.date(2024, 1, 2).strftime('%A %B'), time.asctime(time.gmtime(0)), calendar.month_name[3]]\n",
    "codecs": "def f():\n    return [str('bücher.de'.encode('idna')), str('é'.encode('latin-1')),"
    " 'x'.encode('utf-16').hex()]\n",
    "decimal": "import decimal\ndef f():\n"
    "    return [str(decimal.Decimal(2).sqrt()), str(decimal.Decimal('1.5').exp())]\n",
    "hashlib": "import hashlib, base64\ndef f():\n"
    "    return [hashlib.sha3_256(b'x').hexdigest(), hashlib.new('sha256', b'x').hexdigest(),"
    " base64.b64encode(b'xy').decode()]\n",
    "unicodedata": "import unicodedata\ndef f():\n"
    "    return [unicodedata.normalize('NFKD', 'é'), unicodedata.name('a')]\n",
    "numbers": "import statistics, fractions\ndef f():\n"
    "    return [str(statistics.stdev([1.0, 2.0])), str(fractions.Fraction('1/3')), round(2.675, 2)]\n",
    "uuid5": "import uuid\ndef f():\n    return str(uuid.uuid5(uuid.NAMESPACE_DNS, 'example.com'))\n",
    "text": "import textwrap, difflib, string\ndef f():\n    return [textwrap.shorten('hello world again', 12),"
    " difflib.get_close_matches('appel', ['apple', 'ape']), string.capwords('a b')]\n",
}  # fmt: skip


def test_first_use_of_the_allowed_modules_in_a_fresh_process_behaves_as_plain_python() -> None:
    """C functions that import a helper module on first use (``strptime`` imports ``_strptime``) do it through
    the calling frame's ``__import__``, the guarded one in tool code. Such a first use happens only in a fresh
    process (an earlier import anywhere in the test process would hide it), so the calls run in one."""
    driver = (
        "import json, sys\nfrom toolgym.sandbox import Toolbox, serialize_output\ncases = json.load(sys.stdin)\n"
        "out = {}\nfor k, src in cases.items():\n    got = Toolbox({'f': src}).call('f', {})\n"
        "    ns = {}\n    exec(src, ns)\n    out[k] = [got.output, serialize_output(ns['f']())]\n"
        "print(json.dumps(out))\n"
    )  # the sandboxed call of each case runs before its plain twin, so plain code never loads a module first
    res = subprocess.run(
        [sys.executable, "-c", driver], input=json.dumps(FIRST_USE), capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-1000:]
    got = json.loads(res.stdout)
    assert {k: v[0] for k, v in got.items()} == {k: v[1] for k, v in got.items()}


@pytest.mark.parametrize("module", ["os", "sys", "subprocess", "importlib", "socket", "pickle", "ctypes", "os.path"])
def test_other_imports_refused_at_compile_listing_the_allowed(module: str) -> None:
    with pytest.raises(ToolSourceError) as exc:
        compile_tool_source(f"import {module}\ndef f():\n    return 1\n")
    assert f"import of {module!r} is not allowed" in str(exc.value) and "typing, dataclasses" in str(exc.value)


# ----------------------------------------------------------------------------------------------- random


RANDOM_TOOL = """
import random, uuid
GEN = random.Random()
FIXED = random.Random(7)
def draw():
    r = random.Random()
    return [random.random(), random.randint(1, 10**6), str(uuid.uuid4()), GEN.random(), FIXED.random(), r.random()]
"""


def test_random_is_seeded_per_episode_and_never_global() -> None:
    box = Toolbox({"draw": RANDOM_TOOL})
    state = random.getstate()
    box.reseed(1)
    a = box.call("draw", {}).output
    box.reseed(2)
    b = box.call("draw", {}).output
    box.reseed(1)
    assert box.call("draw", {}).output == a != b
    assert Toolbox({"draw": RANDOM_TOOL}).reseed(1) is None
    other = Toolbox({"draw": RANDOM_TOOL})
    other.reseed(1)
    assert other.call("draw", {}).output == a  # a fresh Toolbox, same seed, same draws
    assert random.getstate() == state  # the process's global RNG was never touched


def test_random_guards() -> None:
    src = (
        "import random\nDATA = [1, 2, 3]\n"
        "def f(k):\n    if k == 0:\n        random.shuffle(DATA)\n"
        "    elif k == 1:\n        return random.getrandbits(10**10)\n"
        "    elif k == 2:\n        return random.choices([1], k=10**9)\n"
        "    elif k == 3:\n        return random.SystemRandom\n"
        "    return random.randbytes(10**9)\n"
    )
    box = Toolbox({"f": src})
    for k in range(5):
        assert not box.call("f", {"k": k}).ok


def test_random_follows_reseed_in_the_worker_process() -> None:
    box = Toolbox({"draw": RANDOM_TOOL})
    sandbox = ProcessSandbox()
    try:
        box.reseed(3)
        a = sandbox.call(box, "draw", {}, {}).output
        box.reseed(3)
        assert sandbox.call(box, "draw", {}, {}).output == a
        assert box.call("draw", {}).output == a  # in-process and in the worker alike
    finally:
        sandbox.close()


def test_env_reseeds_tools_from_np_random() -> None:
    from toolgym.scenario import Scenario

    sc = Scenario(
        id="r",
        kind="single_hop",
        messages=[{"role": "user", "content": "draw"}],
        tools=[{"type": "function", "function": {"name": "draw", "parameters": {"type": "object"}}}],
        source={"draw": RANDOM_TOOL},
        state={},
        subtasks=[],
        answer="",
    )
    from toolgym import StaticSource, ToolEnv

    env = ToolEnv(StaticSource("r", [sc]))
    outs = []
    for seed in (5, 6, 5):
        env.reset(seed=seed, options={"scenario": sc})
        _, _, _, _, info = env.step({"tool_calls": [{"name": "draw", "arguments": {}}]})
        outs.append(info["feedback"][0])
    assert outs[0] == outs[2] != outs[1]


# ------------------------------------------------------------------------------------------- the attacks

ATTACKS = [
    # str.format / format_map attribute walks
    "def f():\n    return '{0.__class__}'.format(1)",
    "def f():\n    return '{0._x}'.format(1)",
    "def f():\n    return '{x.__init__.__globals__}'.format_map({'x': 1})",
    "class A:\n    pass\ndef f():\n    return '{0.__init__.__globals__}'.format(A())",
    "class A:\n    def __init__(self):\n        self._x = 1\ndef f():\n    return '{0._x.__class__}'.format(A())",
    # generators, frames, tracebacks
    "def f():\n    g = (i for i in [1])\n    return getattr(g, 'gi_frame')",
    "def f():\n    g = (i for i in [1])\n    return g.gi_frame.f_globals",
    "def f():\n    g = (i for i in [1])\n    return getattr(g, 'gi_code')",
    "def f():\n    try:\n        1 / 0\n    except Exception as e:\n        return e.__traceback__",
    "def f():\n    try:\n        1 / 0\n    except Exception as e:\n"
    "        return getattr(e, '__traceback__').tb_frame",
    "def f():\n    try:\n        1 / 0\n    except Exception as e:\n"
    "        return e.__traceback__.tb_frame.f_back.f_globals",
    # operator / functools
    "import operator\ndef f():\n    return operator.attrgetter('__class__')(1)",
    "import operator\ndef f():\n    return operator.attrgetter('real.__class__.__base__')(1)",
    "import operator\ndef f():\n    return operator.attrgetter('_evaluate')(1)",
    "import operator\ndef f():\n    return operator.methodcaller('__reduce_ex__', 2)(1)",
    "import operator\nD = {}\ndef f():\n    operator.setitem(D, 'k', 1)",
    "import operator\nL = []\ndef f():\n    operator.iadd(L, [1])",
    "import operator\ndef f():\n    return operator.mul('x', 10**10)",
    "import operator\ndef f():\n    return operator.pow(10, 10**9)",
    "import functools\ndef f():\n    return functools.reduce(getattr, ['__class__', '__base__'], 1)",
    "import functools, json\ndef f():\n    return functools.update_wrapper(json, len)",
    "import functools, string\ndef f():\n    return functools.total_ordering(string.Template)",
    "import functools\ndef g():\n    pass\ndef f():\n    functools.update_wrapper(g, len, assigned=('__globals__',))\n"
    "    return getattr(g, '__globals__')",
    # typing and dataclass internals
    "import typing\ndef f():\n    return typing.get_type_hints(f)",
    "import typing\ndef f():\n    return typing.ForwardRef('1')",
    "import typing\ndef f():\n    ref = typing.get_args(typing.List['__import__(\"os\")'])[0]\n"
    "    return ref._evaluate({}, {}, frozenset())",
    "import typing\ndef f():\n    return getattr(typing.get_args(typing.List['x'])[0], '__forward_code__')",
    "import typing\ndef f():\n    return typing.List.__args__",
    "def f():\n    return f.__annotations__",
    "import dataclasses\ndef f():\n    return dataclasses.make_dataclass('X', [], namespace={'__del__': f})",
    "import dataclasses\ndef f():\n    return dataclasses.make_dataclass('M', [], bases=(type,))('Y', (), {})",
    "import dataclasses\ndef f():\n"
    "    return dataclasses.fields(dataclasses.make_dataclass('X', ['a']))[0].type.__globals__",
    # copy's reduce protocol
    "import copy\nclass A:\n    def __reduce_ex__(self, p):\n        return (print, ())\n"
    "def f():\n    return copy.copy(A())",
    "import copy\nclass A:\n    def __reduce__(self):\n        return (print, ())\ndef f():\n    return copy.copy(A())",
    "import copy, dataclasses\ndef f():\n"
    "    A = dataclasses.make_dataclass('A', [], namespace={'__reduce_ex__': lambda s, p: (len, ())})\n"
    "    return copy.copy(A())",
    # json hooks, re callbacks
    "import json\ndef f():\n    return json.loads('{\"a\": 1}', object_hook=lambda d: getattr(d, '__class__'))",
    "import json\ndef f():\n    return json.loads('[1]', parse_int=lambda s: ().__class__)",
    "import re\ndef f():\n    return re.sub('a', lambda m: getattr(m, '__class__').__name__ + m.__class__, 'a')",
    # decorators
    "def deco(fn):\n    return fn.__globals__\n@deco\ndef f():\n    return 1",
    "def deco(fn):\n    return getattr(fn, '__code__')\n@deco\ndef f():\n    return 1",
    # metaclasses
    "class M(type):\n    pass\ndef f():\n    return M",
    "class M(type):\n    pass\nclass A(metaclass=M):\n    pass\ndef f():\n    return A",
    "import abc\ndef f():\n    return abc.ABCMeta('X', (), {})",
    "import enum\ndef f():\n    return enum.EnumMeta",
    "import enum\nclass C(type(enum.Enum)):\n    pass\ndef f():\n    return C",
    "class A:\n    pass\ndef f():\n    return type(A)('B', (), {'__del__': print})",
    "class A:\n    def __init_subclass__(cls):\n        pass\ndef f():\n    return A",
    "class A:\n    def __getattr__(self, name):\n        return 1\ndef f():\n    return A()",
    "class A:\n    def __getattribute__(self, name):\n        return 1\ndef f():\n    return A()",
    "class A:\n    def __del__(self):\n        pass\ndef f():\n    return A()",
    "class A:\n    def __set_name__(self, owner, name):\n        pass\ndef f():\n    return A()",
    "class A:\n    def __index__(self):\n        return 10**10\ndef f():\n    return 'x' * A()",
    "class A:\n    __slots__ = ()\ndef f():\n    return A()",
    # super() tricks
    "class A:\n    def f(self):\n        return super().__getattribute__('__class__')\ndef f():\n    return A().f()",
    "class A(dict):\n    pass\nD = {}\ndef f():\n    super(A, A).__init__(D, x=1)\n    return D",
    "D = {}\ndef f():\n    super(int, 1).__init__()\n    return D",
    "class A(dict):\n    pass\nD = {}\ndef f():\n    A.__init__(D, {'x': 1})\n    return D",
    "import json\nclass N(type(json)):\n    pass\ndef f():\n    N.__init__(json, dumps=len)\n    return json.dumps",
    "class A:\n    pass\nINST = A()\ndef f():\n    INST.x = 1",
    "class A(dict):\n    pass\nINST = A()\ndef f():\n    super(A, INST).update(x=1)",
    "class A(list):\n    pass\nINST = A()\ndef f():\n    INST.append(1)",
    "class A:\n    def __init__(self):\n        self.n = 0\nINST = A()\ndef f():\n    INST.__init__()",
    # escapes through the new modules
    "import random\ndef f():\n    return random.Random().__class__",
    "import random\ndef f():\n    return getattr(random.Random(), '__class__')",
    "import random\ndef f():\n    return random.Random()._randbelow(5)",
    "import random\ndef f():\n    return type(random.Random()).__mro__",
    "import uuid\ndef f():\n    return uuid.UUID.__init__.__globals__",
    "import uuid\ndef f():\n    return uuid.UUID.__init__(uuid.NAMESPACE_DNS, int=1)",
    "import uuid\ndef f():\n    return uuid.getnode()",
    "import uuid\ndef f():\n    return uuid.os",
    "import enum\ndef f():\n    return enum.Enum.__subclasses__()",
    "import enum\ndef f():\n    return getattr(enum.Enum, '__subclasses__')()",
    "import abc\ndef f():\n    return abc.ABCMeta.register",
    "import abc\ndef f():\n    return abc.ABC.register(int)",
    "import collections.abc\ndef f():\n    return collections.abc.Sequence.register(set)",
    "import numbers\ndef f():\n    return numbers.Number.register(str)",
    "import collections.abc\ndef f():\n    return collections.abc.Mapping._abc_impl",
    "import zoneinfo\ndef f():\n    return zoneinfo.reset_tzpath(['/etc'])",
    "import calendar\ndef f():\n    return calendar.setfirstweekday(3)",
    "import time\ndef f():\n    return time.sleep(5)",
    "import hashlib\ndef f():\n    return hashlib.file_digest",
    "import hashlib\ndef f():\n    return hashlib.new('shake_128').hexdigest(10**10)",
    "import string\ndef f():\n    string.Template.delimiter = '%'",
    "import dataclasses, string\ndef f():\n    dataclasses.dataclass(string.Template)",
    "import dataclasses, string\ndef f():\n    dataclasses.dataclass(frozen=True)(string.Template)",
    "import typing, string\ndef f():\n    typing.final(string.Template)\n    return 1 / 0",
    "import typing, string\ndef f():\n    return typing.no_type_check(string.Template)",
    "import typing\ndef f():\n    return typing.runtime_checkable(typing.SupportsInt)",
    "import string\ndef f():\n    setattr(string.Template, 'delimiter', '%')",
    "import json\ndef f():\n    setattr(json, 'dumps', len)",
    # names that would shadow the guards, introspection builtins
    "_tick_ = lambda: None\ndef f():\n    while True:\n        pass",
    "def _getattr_(ob, name):\n    return 1\ndef f():\n    return 1",
    "def f():\n    exec('_tick_ = 1')",
    "def f():\n    return eval('x', {'_getattr_': getattr})",
    "def f():\n    return eval('x', {}, {'_write_': len})",
    "def f():\n    return eval('1', {'__builtins__': {'_getattr_': getattr}})",
    "def f():\n    return exec('import os')",
    "def f():\n    return eval('__builtins__')",
    "def f():\n    return vars(f)",
    "def f():\n    return globals()",
    "def f():\n    return locals()",
    "def f():\n    return type('X', (), {})",
    "def f():\n    return delattr(f, '__globals__')",
    "class A:\n    pass\ndef f():\n    a = A()\n    setattr(a, '__class__', int)",
    "def f():\n    return hasattr(f, '__globals__') or 1 / 0",
    "def f():\n    __name__ = 'x'",
    "def f():\n    return object.__subclasses__()",
    "def f():\n    return getattr(object, '__subclasses__')()",
    "import json\ndef f():\n    return object.__init__(json)",
    "import json\ndef f():\n    return object.__setattr__(json, 'dumps', len)",
    "def f():\n    return compile('1', 'x', 'eval')",
]


@pytest.mark.parametrize("source", ATTACKS, ids=range(len(ATTACKS)))
def test_attacks_are_refused(source: str) -> None:
    real_len, real_import = builtins.len, builtins.__import__
    try:
        box = Toolbox({"f": source}, time_limit=2.0)
    except ToolSourceError as e:
        assert "'f'" in str(e)
    else:
        out = box.call("f", {})
        assert not out.ok, out.output
        assert not any(s in out.output for s in SECRETS if s not in source), out.output  # an echo is no leak
    assert builtins.len is real_len and builtins.__import__ is real_import
    import string

    assert string.Template.delimiter == "$"
    assert not hasattr(string.Template, "__final__") and "__dataclass_fields__" not in vars(string.Template)
    assert Toolbox({"f": "import json\ndef f():\n    return json.dumps([len([1])])"}).call("f", {}).output == "[1]"


EXHAUSTION = [
    "import textwrap\ndef f():\n    return textwrap.fill('a ' * 10**6, width=3, subsequent_indent='x' * 10**6)",
    "import textwrap\ndef f():\n    return textwrap.indent('\\n' * 10**6, 'x' * 10**6)",
    "import string\ndef f():\n    return string.Template('$x' * 10**6).substitute(x='y' * 10**6)",
    "import itertools\ndef f():\n    n = 0\n"
    "    for _ in itertools.product(range(10**6), repeat=10):\n        n += 1\n    return n",
    "import itertools\ndef f():\n    return len(list(itertools.product(range(10**6), repeat=10)))",
    "import math\ndef f():\n    return math.factorial(10**8)",
    "import heapq\ndef f():\n    h = list(range(10**7, 0, -1))\n    while True:\n        heapq.heapify(h)",
    "import difflib\ndef f():\n    a = 'ab' * 20000\n"
    "    return difflib.SequenceMatcher(None, a, a[::-1], autojunk=False).ratio()",
    "import difflib\ndef f():\n    return list(difflib.ndiff(['a' * 5000] * 400, ['b' * 5000] * 400))",
    "import calendar\ndef f():\n    return calendar.month(2024, 1, w=10**8)",
    "import calendar\ndef f():\n    return calendar.weekheader(10**9)",
    "import unicodedata\ndef f():\n    return unicodedata.normalize('NFKD', '\\ufdfa' * 5 * 10**6)",
    "import hashlib\ndef f():\n    return hashlib.pbkdf2_hmac('sha256', b'x', b'y', 10**12)",
    "import time\ndef f():\n    return time.strftime('%c' * 10**6)",
    "import textwrap\ndef f():\n    return textwrap.wrap('\\t' * 1000, tabsize=10**7)",
    "import difflib\ndef f():\n    a, b = ['a', 'x'] * 5000, ['b', 'x'] * 5000\n"
    "    return list(difflib.unified_diff(a, b, n=0, lineterm='y' * 10**6))",
    "import statistics\ndef f():\n    return statistics.quantiles([1, 2, 3], n=10**9)",
    "def f():\n    return eval('[x for x in range(10**6) for y in range(10**6)]')",
    "def f():\n    exec('while True:\\n    pass')",
    "def f():\n    return eval('9' * 10**6 + '**' + '9' * 10**6)",
    "class A:\n    def __repr__(self):\n        while True:\n            pass\ndef f():\n    return A()",
    "class E(Exception):\n    def __str__(self):\n        while True:\n            pass\ndef f():\n    raise E('x')",
    "class A:\n    def __eq__(self, o):\n        while True:\n            pass\n"
    "    def __hash__(self):\n        return 1\n"
    "def f():\n    return len({A(), A()})",
    "import json, itertools\ndef f():\n"
    "    return json.loads('[' * 10 + '1' + ']' * 10, parse_int=lambda s: list(itertools.count()))",
    "import re\ndef f():\n    return re.sub('a', lambda m: 'b' * 10**6, 'a' * 10**6)",
    "import random\ndef f():\n    x = list(range(10**7))\n    while True:\n        random.shuffle(x)",
]


@pytest.mark.parametrize("source", EXHAUSTION, ids=range(len(EXHAUSTION)))
def test_resource_exhaustion_is_bounded(source: str) -> None:
    limit = 0.5
    box = Toolbox({"f": source, "ok": "def ok():\n    return 'fine'"}, time_limit=limit, step_budget=200_000)
    t0 = time.perf_counter()
    out = box.call("f", {})
    elapsed = time.perf_counter() - t0
    assert not out.ok, out.output[:200]
    assert out.error in ("timeout", "resource", "exception"), out
    assert elapsed < 6 * limit + 1.0, elapsed
    assert box.call("ok", {}) == ToolOutcome(True, "fine", None)  # the Toolbox keeps working


def test_module_level_objects_are_read_only() -> None:
    src = (
        "class A:\n    def __init__(self):\n        self.items = []\n        self._n = 0\n"
        "    def add(self, x):\n        self.items.append(x)\n        self._n += 1\n        return self._n\n"
        "INST = A()\n"
        "def shared(x):\n    return INST.add(x)\n"
        "def fresh(x):\n    return A().add(x)\n"
    )
    box = Toolbox(dict.fromkeys(("shared", "fresh"), src))
    out = box.call("shared", {"x": 1})
    assert not out.ok and "read-only" in out.output
    assert box.call("fresh", {"x": 1}) == ToolOutcome(True, "1", None)


def test_eval_ticks_the_budget_and_sees_the_caller() -> None:
    src = "import math\nK = 3\ndef f(e):\n    local = 2\n    return eval(e)\n"
    box = Toolbox({"f": src}, step_budget=5000)
    assert box.call("f", {"e": "math.sqrt(K * K) + local"}).output == "5.0"
    assert box.call("f", {"e": "sum(1 for _ in range(10**5))"}).error == "timeout"
    ns = "def f():\n    ns = {}\n    exec('def g(x):\\n    return x * 2\\ny = g(21)', ns)\n    return ns['y']\n"
    assert Toolbox({"f": ns}).call("f", {}).output == "42"
    again = (
        "def f():\n    ns = {'__builtins__': {}}\n    exec('a = 1', ns)\n    exec('b = a + 1', ns)\n"
        "    return ns['b']\n"
    )
    assert Toolbox({"f": again}).call("f", {}).output == "2"


def test_allowed_constructs_have_working_semantics() -> None:
    src = """
import functools, operator, heapq, bisect, copy, textwrap, difflib, hashlib, base64, uuid, unicodedata, statistics
from abc import ABC, abstractmethod
from typing import NamedTuple
import string


class Shape(ABC):
    @abstractmethod
    def area(self): ...


class Sq(Shape):
    def __init__(self, s):
        self.s = s

    def area(self):
        return self.s ** 2


@functools.total_ordering
class V:
    def __init__(self, v):
        self.v = v

    def __eq__(self, o):
        return self.v == o.v

    def __lt__(self, o):
        return self.v < o.v


class P(NamedTuple):
    x: int
    y: int = 0


class MyError(ValueError):
    def __init__(self, code):
        super().__init__(f"code {code}")
        self.code = code


def f():
    h = []
    for x in (3, 1, 2):
        heapq.heappush(h, x)
    lst = [1, 3]
    bisect.insort(lst, 2)
    try:
        Shape()
        abstract = False
    except TypeError:
        abstract = True
    try:
        raise MyError(7)
    except MyError as e:
        err = (str(e), e.code)
    p = P(1)
    return {
        "heap": [heapq.heappop(h) for _ in range(3)],
        "insort": lst,
        "area": Sq(3).area(),
        "abstract": abstract,
        "ordering": V(1) <= V(2),
        "nt": [p._asdict(), p._replace(y=5).y, list(P._fields)],
        "err": list(err),
        "attr": operator.attrgetter("s")(Sq(4)),
        "call": operator.methodcaller("area")(Sq(2)),
        "copy": copy.deepcopy({"a": [1]}),
        "wrap": textwrap.wrap("aaa bbb ccc", 4),
        "ratio": round(difflib.SequenceMatcher(None, "abcd", "abce").ratio(), 2),
        "close": difflib.get_close_matches("appel", ["apple", "ape"]),
        "md5": hashlib.md5(b"x").hexdigest(),
        "b64": base64.b64encode(b"hi").decode(),
        "uuid5": str(uuid.uuid5(uuid.NAMESPACE_DNS, "x")),
        "nfc": unicodedata.normalize("NFC", "e\\u0301") == "\\u00e9",
        "mean": statistics.mean([1, 2, 3]),
        "tpl": string.Template("$a-$b").substitute(a=1, b=2),
        "reduce": functools.reduce(operator.add, [1, 2, 3]),
    }
"""
    out = Toolbox({"f": src}).call("f", {})
    assert out.ok, out.output
    got = json.loads(out.output)
    assert got["heap"] == [1, 2, 3] and got["insort"] == [1, 2, 3] and got["area"] == 9 and got["abstract"]
    assert got["ordering"] and got["nt"] == [{"x": 1, "y": 0}, 5, ["x", "y"]] and got["err"] == ["code 7", 7]
    assert got["attr"] == 4 and got["call"] == 4 and got["copy"] == {"a": [1]} and got["wrap"] == ["aaa", "bbb", "ccc"]
    assert got["ratio"] == 0.75 and got["close"] == ["apple", "ape"] and got["b64"] == "aGk="
    assert got["md5"] == "9dd4e461268c8034f5c8564e155c67a6" and got["nfc"] and got["mean"] == 2
    assert got["tpl"] == "1-2" and got["reduce"] == 6
    assert got["uuid5"] == "05b16a01-46c6-56dd-bd6e-c6dfb4a1427a"


# ------------------------------------------------------------------------------------- hypothesis: dunders

_CHAIN_NAMES = [
    "__class__", "__dict__", "__subclasses__", "__mro__", "__bases__", "__base__", "__globals__", "__code__",
    "__closure__", "__builtins__", "__getattribute__", "__reduce__", "__reduce_ex__", "__init__", "__self__",
    "__func__", "__wrapped__", "__module__", "__qualname__", "__annotations__", "__dataclass_fields__",
    "__members__", "__origin__", "__args__", "__forward_code__", "__eq__", "__repr__", "__call__", "__getitem__",
    "__enter__", "__len__", "__iter__", "__next__", "__hash__", "gi_frame", "f_back", "f_globals", "tb_frame",
    "cr_frame", "_evaluate", "_abc_impl", "_member_map_", "_randbelow", "_asdict", "_fields", "_x", "register",
    "mro", "type", "real", "name", "value", "fields", "hex", "args", "func", "keywords", "template", "pattern",
]  # fmt: skip
_OBJECTS = (
    "import typing, dataclasses, enum, abc, random, uuid, operator, functools, collections.abc, numbers, json\n"
    "import decimal, fractions, datetime, string, difflib, textwrap, heapq, bisect, hashlib, calendar, time, re\n"
    "@dataclasses.dataclass\nclass D:\n    a: int = 1\n"
    "class E(enum.Enum):\n    X = 1\n"
    "OBJECTS = [typing, typing.List[int], typing.get_args(typing.List['x'])[0], dataclasses, D, D(),\n"
    "    dataclasses.fields(D)[0], enum.Enum, E, E.X, abc.ABC, random.Random(), random, uuid.uuid4(), uuid.UUID,\n"
    "    operator.attrgetter('a'), functools.partial(len), collections.abc.Mapping, numbers.Number, json,\n"
    "    decimal.Decimal(1), fractions.Fraction(1, 2), datetime.datetime(2020, 1, 1), string.Template('$a'),\n"
    "    difflib.SequenceMatcher(), re.compile('a'), hashlib.sha256(), calendar, time.gmtime(0), (i for i in []),\n"
    "    ValueError('x'), len, D.__init__]\n"
    "def f(i, names):\n    ob = OBJECTS[i]\n    for n in names:\n        ob = getattr(ob, n)\n    return 'ok'\n"
)
_N_OBJECTS = 33
_FORBIDDEN_TYPES = (types.FrameType, types.CodeType, types.TracebackType, types.ModuleType, types.CellType)


@pytest.fixture(scope="module")
def chain_box() -> Toolbox:
    return Toolbox({"f": _OBJECTS})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(i=st.integers(0, _N_OBJECTS - 1), names=st.lists(st.sampled_from(_CHAIN_NAMES), min_size=1, max_size=4))
def test_random_attribute_chains_are_refused_or_harmless(chain_box: Toolbox, i: int, names: list[str]) -> None:
    # at run time, through the sandbox's getattr
    assert len(chain_box._tools["f"][1]["OBJECTS"]) == _N_OBJECTS
    out = chain_box.call("f", {"i": i, "names": names})
    assert out.ok or out.error in ("exception", "bad_arguments"), out
    assert not any(s in out.output for s in SECRETS if s not in names), out.output  # an echoed name is no leak
    # the guard itself, on the real objects: whatever it hands out is none of the ways out
    rt = chain_box._rt.builtins
    ob = chain_box._tools["f"][1]["OBJECTS"][i]
    for n in names:
        try:
            ob = rt["getattr"](ob, n)
        except (AttributeError, TypeError):
            break
        assert not isinstance(ob, _FORBIDDEN_TYPES), (names, ob)
        assert not (isinstance(ob, dict) and ("__builtins__" in ob or "__name__" in ob)), names
        assert not (isinstance(ob, type) and issubclass(ob, type)), names  # no metaclass
        assert ob is not builtins and ob is not sys
    # and at compile time: a literal chain compiles exactly when every name may be spelled in tool code
    literal_ok = all(n in _PROTOCOL_OK if n.startswith("__") else n not in INSPECT_ATTRIBUTES for n in names)
    try:
        compile_tool_source("def g(ob):\n    return ob." + ".".join(names) + "\n")
    except ToolSourceError:
        assert not literal_ok, names
    else:
        assert literal_ok, names


# ------------------------------------------------------------------------------------------ load-time checks


def _ftrl_record(code: str, name: str = "calc") -> dict:
    return {
        "id": "rec-1",
        "messages": [{"role": "user", "content": "2+2?"}],
        "tools": [{"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}],
        "codes": {name: code},
        "unsolved_set": {name: ["4"]},
        "answer": "4",
    }


def test_ftrl_record_with_real_code_loads() -> None:
    code = "from typing import Any\nimport math\ndef calc(expression: str) -> Any:\n    return eval(expression)\n"
    sc = scenario_from_ftrl(_ftrl_record(code), "pack.jsonl:3")
    assert sc.source["calc"] == code


@pytest.mark.parametrize(
    ("code", "construct"),
    [
        ("import os\ndef calc():\n    return 1\n", "import of 'os' is not allowed"),
        ("def calc():\n    return ().__class__\n", "__class__"),
        ("class M(type):\n    pass\ndef calc():\n    return 1\n", "module code failed"),
        ("import enum\nclass M(type(enum.Enum)):\n    pass\ndef calc():\n    return 1\n", "module code failed"),
        ("def other():\n    return 1\n", "does not define a function named 'calc'"),
        ("while True:\n    pass\ndef calc():\n    return 1\n", "module code failed"),
    ],
)
def test_refused_tool_is_one_pack_error_at_load(tmp_path: Path, code: str, construct: str) -> None:
    path = tmp_path / "pack.jsonl"
    good = _ftrl_record("def calc():\n    return 4\n")
    bad = _ftrl_record(code)
    bad["id"] = "rec-bad"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(PackError) as exc:
        load_scenarios(path, "ftrl")
    msg = str(exc.value)
    assert msg.startswith(f"{path}:2: field 'codes.calc': record 'rec-bad': tool 'calc': "), msg
    assert construct in msg, msg


def test_toolgym_record_sources_are_checked(tmp_path: Path) -> None:
    from toolgym.scenario import Scenario

    sc = Scenario(
        id="t1",
        kind="single_hop",
        messages=[{"role": "user", "content": "x"}],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        source={"f": "def f():\n    return eval('1')\n"},
        state={},
        subtasks=[],
        answer="",
    )
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(sc.to_dict()) + "\n")
    assert load_scenarios(path)[0].id == "t1"
    bad = sc.to_dict()
    bad["source"] = {"f": "import subprocess\ndef f():\n    return 1\n"}
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(PackError, match=r"p.jsonl:1: field 'source.f': record 't1': tool 'f': .*subprocess"):
        load_scenarios(path)


def test_runtime_failures_are_feedback_not_raises(real: Toolbox) -> None:
    out = real.call("lookup", {"user_id": "u1"}, {})  # KeyError: 'users' inside the tool
    assert not out.ok and out.error == "exception" and "KeyError" in out.output


def test_tool_objects_do_not_reach_the_world() -> None:
    """The env compares and pickles the world outside any call, where a tool class's ``__eq__`` would run
    unguarded: instances of tool classes are taken out of the state and the call fails."""
    src = (
        "class Evil:\n    def __eq__(self, other):\n        while True:\n            pass\n"
        "    def __hash__(self):\n        return 1\n"
        "def put(data):\n    data['x'] = Evil()\n    data['items'] = [1, Evil()]\n"
        "    data[Evil()] = 1\n    return 'ok'\n"
        "def keep(data):\n    data['n'] = data.get('n', 0) + 1\n    return data['n']\n"
    )
    box = Toolbox(dict.fromkeys(("put", "keep"), src))
    world: dict = {"y": 2}
    out = box.call("put", {}, world)
    assert not out.ok and "plain data" in out.output
    assert world == {"y": 2, "x": None, "items": [1, None]}
    assert box.call("keep", {}, world).output == "1"


def test_env_passes_its_world_as_data_and_checks_it() -> None:
    from toolgym import StaticSource, ToolEnv
    from toolgym.scenario import Scenario, StateCheck, SubTask

    src = "def book(data, room: str):\n    data['rooms'][room] = 'booked'\n    return {'room': room, 'ok': True}\n"
    sc = Scenario(
        id="d",
        kind="single_hop",
        messages=[{"role": "user", "content": "book 7"}],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "book",
                    "parameters": {"type": "object", "properties": {"room": {"type": "string"}}, "required": ["room"]},
                },
            }
        ],
        source={"book": src},
        state={"rooms": {"7": "free"}},
        subtasks=[
            SubTask(
                id="s0",
                tool="book",
                arguments={"room": "7"},
                answers=["7"],
                state_checks=[StateCheck(["rooms", "7"], "booked")],
            )
        ],
        answer="",
    )
    env = ToolEnv(StaticSource("d", [sc]))
    env.reset(seed=0, options={"scenario": sc})
    _, _, _, _, info = env.step({"tool_calls": [{"name": "book", "arguments": {"room": "7"}}]})
    assert env.state["rooms"]["7"] == "booked"
    assert info["reward_components"]["state_ok"] == 1.0
    assert sc.state["rooms"]["7"] == "free"  # the scenario's world is copied per episode


def test_dataclass_string_annotations_keep_their_meaning() -> None:
    src = (
        "from dataclasses import dataclass, InitVar, fields\nfrom typing import ClassVar, List\n"
        "@dataclass\nclass C:\n    a: int\n    count: ClassVar[int] = 0\n    scale: InitVar[int] = 1\n"
        "    items: List[int] = None\n    def __post_init__(self, scale):\n        self.a = self.a * scale\n"
        "def f():\n    return [[x.name for x in fields(C)], C(2, 3).a]\n"
    )
    assert Toolbox({"f": src}).call("f", {}).output == '[["a", "items"], 6]'
