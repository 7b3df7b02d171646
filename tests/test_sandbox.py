"""Tests for toolgym.sandbox: realistic tools work unchanged, escapes fail, runaway tools stop fast."""

from __future__ import annotations

import builtins
import json
import signal
import textwrap
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.sandbox import Toolbox, ToolOutcome, ToolSourceError, compile_tool_source, serialize_output

WEATHER = """\
def get_weather(city: str, unit: str = 'celsius'):
    t = {'oslo': -3, 'cairo': 31, 'lima': 19}
    if city.lower() not in t:
        return {'error': 'unknown city ' + city}
    v = t[city.lower()]
    if unit == 'fahrenheit':
        v = round(v * 9 / 5 + 32)
    return {'city': city, 'temperature': v, 'unit': unit}
"""
CURRENCY = """\
def get_currency(country: str):
    d = {'norway': 'Norwegian krone', 'egypt': 'Egyptian pound', 'peru': 'Sol'}
    if country.lower() not in d:
        raise ValueError('no currency for ' + country)
    return d[country.lower()]
"""
BOOK = """\
def book_flight(flight_id: str, passenger: str):
    flights = state['flights']
    if flight_id not in flights:
        return {'error': 'no flight ' + flight_id}
    n = state['next_booking']
    state['next_booking'] = n + 1
    code = 'BK' + str(n)
    state['bookings'][code] = {'flight_id': flight_id, 'passenger': passenger, 'status': 'confirmed'}
    flights[flight_id]['seats_left'] -= 1
    return {'booking_id': code, 'status': 'confirmed'}
"""
EXAMPLES = {"get_weather": WEATHER, "get_currency": CURRENCY, "book_flight": BOOK}


def _state() -> dict:
    return {"flights": {"FL1": {"seats_left": 3}}, "bookings": {}, "next_booking": 100}


@pytest.fixture(scope="module")
def box() -> Toolbox:
    return Toolbox(EXAMPLES)


def _plain(source: str, name: str = "f", **kwargs):
    """Run the same source as ordinary Python, for comparison."""
    ns: dict = {"state": kwargs.pop("state", None)}
    exec(source, ns)
    return ns[name](**kwargs)


# -------------------------------------------------------------------------------------------- 1. realistic


def test_example_tools(box: Toolbox) -> None:
    assert box.names == ("get_weather", "get_currency", "book_flight")
    out = box.call("get_weather", {"city": "Cairo"})
    assert out == ToolOutcome(True, '{"city": "Cairo", "temperature": 31, "unit": "celsius"}', None)
    out = box.call("get_weather", {"city": "Oslo", "unit": "fahrenheit"})
    assert json.loads(out.output)["temperature"] == 27
    assert json.loads(box.call("get_weather", {"city": "Paris"}).output) == {"error": "unknown city Paris"}
    assert box.call("get_currency", {"country": "Peru"}) == ToolOutcome(True, "Sol", None)


def _blocks(text: str) -> list[str]:
    """Split a text of tool sources separated by '----' lines."""
    return [textwrap.dedent(block).strip("\n") + "\n" for block in text.split("----\n")]


SNIPPETS = _blocks(r"""
def f():
    return [x * x for x in range(10) if x % 2]
----
def f():
    return {k: v for k, v in zip('abc', range(3))}
----
def f():
    return sorted({3, 1, 2}) + sorted((5, 4)) + list(frozenset([7]))
----
def f():
    return [isinstance({}, dict), isinstance([], list), isinstance('', str), isinstance(1, (int, float))]
----
def f():
    xs = [{'n': 'a', 'price': 3}, {'n': 'b', 'price': 1}]
    return [x['n'] for x in sorted(xs, key=lambda f: f['price'])]
----
def f():
    try:
        int('x')
    except ValueError as e:
        return 'caught ' + str(e)
----
def f():
    n, p = 3, 2.5
    return f'{n} items at {p:.2f} = {n * p:>8.3f} {n!r} {"x"!s:>3} {n:{n}d}'
----
def f():
    d = {'a': {'b': 1}, 'c': [1, 2]}
    d['a']['b'] += 5
    d['c'][0] *= 10
    d.setdefault('z', []).append(1)
    d.update({'q': 2})
    return d
----
def f():
    out = []
    for i, (a, b) in enumerate([(1, 2), (3, 4)]):
        out.append(i + a * b)
    return out
----
def f():
    def helper(x):
        def inner(y):
            return y + 1
        return inner(x) * 2
    return helper(4)
----
import math
import json
import re
import datetime
def f():
    d = datetime.date(2024, 1, 31) + datetime.timedelta(days=1)
    return [math.sqrt(16), json.dumps({'a': [1, 2]}), re.findall(r'\d+', 'a1b22'), d.isoformat(),
            json.loads('{"x": 1}')['x'], math.floor(2.7), re.sub('a', 'b', 'banana'),
            re.compile('(a)(b)').match('abc').groups()]
----
def f():
    s = '  Hello, World  '
    return [s.strip().lower(), s.split(','), '-'.join(['a', 'b']), s.startswith('  H'),
            'x{}y{}'.format(1, 'z'), '{a}-{b}'.format(a=1, b=2), s.replace('l', 'L'), 'ab'.upper(),
            '%s=%d' % ('k', 5), 'abc'.center(7, '*'), '7'.zfill(3), 'a\tb'.expandtabs(4),
            '{0[k]}'.format({'k': 'v'}), '{x}'.format_map({'x': 1})]
----
def f():
    xs = [4, 1, 9]
    return [min(xs), max(xs), max(['aa', 'b'], key=len), sum(xs), abs(-2), round(2.567, 2),
            divmod(7, 2), pow(2, 10), pow(3, 4, 5), any(xs), all(xs), len(xs), list(reversed(xs)),
            list(map(str, xs)), list(filter(None, [0, 1])), repr('x'), type(1) is int, type(xs).__name__]
----
def f():
    total = 0
    i = 0
    while i < 100:
        total += i
        i += 1
    return total
----
import collections
import itertools
import functools
import statistics
import string
def f():
    c = collections.Counter('abracadabra')
    c['z'] += 1
    dd = collections.defaultdict(list)
    dd['k'].append(1)
    dd['n'] += [2]
    return [c.most_common(2), dict(dd), list(itertools.islice(itertools.count(5), 3)),
            list(itertools.chain.from_iterable([[1], [2]])), functools.reduce(lambda a, b: a * b, [1, 2, 3]),
            statistics.mean([1, 2, 3]), string.ascii_lowercase[:3], sorted(itertools.permutations('ab'))]
----
import decimal
import fractions
import copy
def f():
    d = {'a': [1]}
    e = copy.deepcopy(d)
    e['a'].append(2)
    return [str(decimal.Decimal('1.10') + decimal.Decimal('2.2')), str(fractions.Fraction(1, 3) * 3), d, e]
----
LIMIT = 3
NAMES = ['x', 'y', 'z', 'w']
def helper(n):
    return NAMES[:n]
def f():
    return helper(LIMIT) + [len(NAMES)]
----
def f():
    a, *rest = [1, 2, 3]
    (x, y), z = (4, 5), 6
    s = 'ab'
    s += 'c'
    l = [1]
    l += [2]
    l[1:] = [7, 8]
    n = 2
    n **= 3
    n <<= 1
    n %= 7
    n -= 1
    return [a, rest, x, y, z, s, l, n]
----
def f():
    gen = (i * 2 for i in range(4))
    return [sum(gen), sum(x for x in [1.5, 2.5]), {i % 3 for i in range(9)}, [*range(3)]]
----
def f():
    print('debug output is ignored')
    return hasattr('x', 'upper'), getattr('x', 'upper')(), getattr({}, 'nope', 42)
----
def f():
    err = None
    try:
        {}['missing']
    except KeyError as e:
        err = 'key ' + str(e)
    finally:
        err = err + '!'
    return err
----
def f():
    return 'BK' + str(7) + str(2.5) + str(None) + str([1, 'a']) + str(b'x', 'ascii')
----
def f():
    xs = list(range(5))
    xs.sort(reverse=True)
    xs.pop()
    xs.extend([9])
    xs.insert(0, -1)
    return xs, xs.index(9), 'a,b'.split(',', 1), bytes(3), bytearray(b'ab'), int.to_bytes(5, 2, 'big')
----
def f(items=None):
    rows = []
    for name, qty in sorted((items or {'b': 2, 'a': 1}).items()):
        if qty <= 0:
            continue
        rows.append({'name': name.title(), 'qty': qty, 'total': round(qty * 1.25, 2)})
    return {'rows': rows, 'count': len(rows), 'ok': all(r['qty'] > 0 for r in rows)}
""")


@pytest.mark.parametrize("source", SNIPPETS, ids=range(len(SNIPPETS)))
def test_ordinary_python_matches_plain_exec(source: str) -> None:
    out = Toolbox({"f": source}).call("f", {})
    assert out.ok, out.output
    assert out.output == serialize_output(_plain(source))


def test_flight_booking_domain_source() -> None:
    """The repo's own FlightBooking tool module runs unchanged (module constants, helpers, f-strings)."""
    domain = pytest.importorskip("toolgym.construct.domains.flight_booking")
    names = ["search_flights", "book_flight", "get_booking", "get_seat_map", "get_loyalty_benefits"]
    tb = Toolbox(dict.fromkeys(names, domain.TOOL_SOURCE))
    assert tb.call("get_loyalty_benefits", {"tier": "Gold"}).output.startswith('{"tier": "gold"')
    assert json.loads(tb.call("get_seat_map", {"flight_id": "X", "cabin": "economy"}, {"flights": {}}).output)


# ---------------------------------------------------------------------------------------------- 2. escapes

ESCAPES = [
    "def f():\n    return ().__class__.__bases__[0].__subclasses__()",
    "def f():\n    return getattr((), '__class__')",
    "def f():\n    return getattr(getattr((), '__class__'), '__subclasses__')()",
    "def f():\n    return type(1).__mro__",
    "def f():\n    return type(1).mro()",
    "def f():\n    return getattr(type(1), 'mro')()",
    "def f():\n    return '{0.__class__}'.format(1)",
    "def f():\n    def g():\n        pass\n    return '{0.__globals__}'.format(g)",
    "def f():\n    return '{a.__class__.__base__}'.format_map({'a': 1})",
    "def f():\n    return str.format('{0.__class__}', 1)",
    "def f():\n    return ''.join(['{0.__class__}']).format(1)",
    "def f():\n    fmt = '{0.__' + 'class__}'\n    return fmt.format(1)",
    "def f():\n    return (x for x in []).gi_frame.f_globals",
    "def f():\n    return getattr((x for x in []), 'gi_frame')",
    "def f():\n    return getattr((x for x in []), 'gi_code')",
    "def f():\n    g = (x for x in [1])\n    return getattr(getattr(g, 'gi' + '_frame'), 'f_back')",
    "def f():\n    try:\n        1 / 0\n    except Exception as e:\n        return e.__traceback__.tb_frame",
    "def f():\n    try:\n        {}[0]\n    except KeyError as e:\n        return getattr(e, '__context__')",
    "def f():\n    __builtins__['len'] = None",
    "def f():\n    global len\n    len = None",
    "def f():\n    import os\n    return os.listdir('/')",
    "def f():\n    return __import__('os')",
    "def f():\n    from json import decoder\n    return decoder.sys",
    "import json\ndef f():\n    return json.decoder",
    "import json\ndef f():\n    return json.codecs",
    "import json\ndef f():\n    return getattr(json, 'scanner')",
    "import re\ndef f():\n    return re.sre_compile",
    "import re\ndef f():\n    return re._compile('a', 0)",
    "import datetime\ndef f():\n    return datetime.sys",
    "import collections\ndef f():\n    return collections.sys",
    "import collections.abc\ndef f():\n    return collections.abc.Mapping.register(int)",
    "import statistics\ndef f():\n    return statistics.random",
    "def f():\n    import importlib\n    return importlib",
    "def f():\n    import os.path\n    return 1",
    "def f():\n    from . import x\n    return x",
    "import string\ndef f():\n    return string.Formatter().get_field('0.__class__', [1], {})",
    "import decimal\ndef f():\n    decimal.getcontext().prec = 10**9\n    return 1",
    "import fractions\ndef f():\n    return fractions.Fraction.register(int)",
    "import functools\ndef f():\n    return functools.partial(getattr, (), '__class__')()",
    "import functools\ndef f():\n    return functools.reduce(getattr, ['__class__'], ())",
    "def f():\n    return open('/etc/passwd').read()",
    "def f():\n    return eval('().__class__')",
    "def f():\n    return exec('import os')",
    "def f():\n    return compile('1', 'x', 'eval')",
    "def f():\n    return globals()",
    "def f():\n    return vars()",
    "def f():\n    return locals()",
    "def f():\n    return dir()",
    "def f():\n    setattr(f, 'x', 1)",
    "def f():\n    delattr(f, 'x')",
    "def f():\n    f.x = 1",
    "def f():\n    return object.__subclasses__()",
    "def f():\n    return type('X', (), {'__eq__': lambda s, o: True})",
    "def f():\n    return type(type(1))('X', (), {})",
    "def f():\n    return type(type)('X', (), {})",
    "class X:\n    def __getattr__(self, name):\n        return 1\ndef f():\n    return X()",
    "class X:\n    def __eq__(self, other):\n        return True\ndef f():\n    return X().__eq__.__globals__",
    "def f(g=().__class__):\n    return g",
    "def f(g=getattr):\n    return g((), '__class__')",
    "def f():\n    return (lambda: 0).__code__",
    "def f():\n    return getattr(lambda: 0, '__globals__')",
    "def f():\n    return getattr(f, '__globals__')['__builtins__']",
    "def f():\n    return f'{().__class__}'",
    "def f():\n    return breakpoint()",
    "def f():\n    return help(len)",
    "def f():\n    return memoryview(b'x')",
    "def f():\n    return super()",
    "async def f():\n    return 1",
    "def f():\n    x = 1\n    def g():\n        nonlocal x\n        x = 2\n    return g()",
    "def f():\n    try:\n        pass\n    except* ValueError:\n        pass",
    "def f():\n    return [].__class__.__base__",
    "def f():\n    x = sorted\n    return x.__self__",
    "def f():\n    return hasattr((), '__class__') or 1 / 0",
]
SECRETS = ("<module", "<function", "<class", "root:", "__builtins__", "<frame", "<code", "mappingproxy")


NOW_ALLOWED = [  # refused before the sandbox ran real tool code; each has its attack variant in ESCAPES
    ("import collections\ndef f():\n    return isinstance({}, collections.abc.Mapping)", "True"),
    ("def f():\n    return eval('1')", "1"),
    ("def f():\n    return exec('x = 1')", "None"),
    ("class X:\n    def __eq__(self, other):\n        return True\ndef f():\n    return X() == 1", "True"),
]


@pytest.mark.parametrize(("source", "output"), NOW_ALLOWED)
def test_formerly_refused_constructs_run(source: str, output: str) -> None:
    assert Toolbox({"f": source}).call("f", {}) == ToolOutcome(True, output, None)


@pytest.mark.parametrize("source", ESCAPES, ids=range(len(ESCAPES)))
def test_escape_attempts_fail(source: str) -> None:
    real_len = builtins.len
    try:
        tb = Toolbox({"f": source})
    except ToolSourceError as e:
        assert "'f'" in str(e)
    else:
        out = tb.call("f", {})
        assert not out.ok, out.output
        assert out.error in ("exception", "bad_arguments")
        assert not any(s in out.output for s in SECRETS), out.output
        assert "\n" not in out.output
    assert builtins.len is real_len
    assert Toolbox({"f": "def f():\n    return len([1, 2])"}).call("f", {}).output == "2"


def test_local_rebinding_of_builtins_is_private() -> None:
    src = "def f():\n    len = lambda x: -1\n    return len('abc')\ndef g():\n    return len('abc')"
    tb = Toolbox({"f": src, "g": src})
    assert tb.call("f", {}).output == "-1"
    assert tb.call("g", {}).output == "3"
    other = Toolbox({"len_test": "len = lambda x: -1\ndef len_test():\n    return len('abc')"})
    assert other.call("len_test", {}).output == "-1"  # a module may shadow a name for itself...
    assert Toolbox({"f": "def f():\n    return len('abc')"}).call("f", {}).output == "3"  # ...not for others


def test_module_data_is_read_only_between_calls() -> None:
    src = "CACHE = {}\nSEEN = []\ndef f(k):\n    CACHE[k] = 1\n    return len(CACHE)\n"
    src += "def g(k):\n    SEEN.append(k)\n"
    tb = Toolbox({"f": src, "g": src})
    for name in ("f", "g"):
        out = tb.call(name, {"k": "a"})
        assert not out.ok and "read-only" in out.output
    assert tb.call("f", {"k": "a"}).error == "exception"


# --------------------------------------------------------------------------------------------- 3. runaways

RUNAWAYS = [
    "def f():\n    while True:\n        pass",
    "def f():\n    for i in range(10**9):\n        pass",
    "def f():\n    def g(n):\n        return g(n + 1)\n    return g(0)",
    "def f():\n    g = lambda n: n and g(n - 1) + g(n - 1)\n    return g(60)",
    "def f():\n    return 'a' * 10**10",
    "def f():\n    return [0] * 10**10",
    "def f():\n    return 10 ** 10**8",
    "def f():\n    return 1 << 10**10",
    "def f():\n    x = 7\n    x **= 10**9\n    return x",
    "def f():\n    x = 'ab'\n    x *= 10**9\n    return x",
    "def f():\n    return 'x'.ljust(10**10)",
    "def f():\n    return 'x'.center(10**10)",
    "def f():\n    return 'x'.zfill(10**10)",
    "def f():\n    return str.rjust('x', 10**10)",
    "def f():\n    return '{:>10000000000}'.format(1)",
    "def f():\n    w = 10**10\n    return f'{1:>{w}}'",
    "def f():\n    return f'{1:>10000000000}'",
    "def f():\n    return format(1, '>10000000000')",
    "def f():\n    return '%10000000000d' % 1",
    "def f():\n    return '%*d' % (10**10, 1)",
    "def f():\n    return b'%10000000000d' % 1",
    "def f():\n    return 'a' * 10000000000",
    "def f():\n    return 10 ** 100000000",
    "import fractions\ndef f():\n    return 3 ** fractions.Fraction(10**9)",
    "def f():\n    return [1] * 10000000000",
    "def f():\n    return bytes(10**10)",
    "def f():\n    return bytearray(10**10)",
    "def f():\n    return type(b'')(10**10)",
    "def f():\n    return list(range(10**10))",
    "def f():\n    return 'a'.expandtabs(10**10)",
    "def f():\n    return ('\\t' * 1000).expandtabs(100000)",
    "def f():\n    return sum(range(10**12))",
    "def f():\n    s = 'ab'\n    for i in range(64):\n        s = s + s\n    return len(s)",
    "def f():\n    s = [1]\n    for i in range(64):\n        s.extend(s)\n    return len(s)",
    "def f():\n    s = [1]\n    for i in range(64):\n        s[len(s):] = s\n    return len(s)",
    "def f():\n    s = 'x' * 1000000\n    return s.replace('', s)",
    "def f():\n    s = 'x' * 1000000\n    return ','.join([s] * 100000)",
    "def f():\n    s = 'x' * 1000000\n    return str([s] * 100000)",
    "def f():\n    s = 'x' * 1000000\n    return f'{[s] * 100000}'",
    "def f():\n    s = 'x' * 1000000\n    return '%s' % ([s] * 100000,)",
    "def f():\n    s = 'x' * 1000000\n    return repr([s] * 100000)",
    "import json\ndef f():\n    s = 'x' * 1000000\n    return json.dumps([s] * 100000)",
    "import json\ndef f():\n    return json.dumps([1], indent=10**9)",
    "import itertools\ndef f():\n    return list(itertools.count())",
    "import itertools\ndef f():\n    return sum(itertools.repeat(1))",
    "import itertools\ndef f():\n    return len(list(itertools.product(range(100), repeat=6)))",
    "import collections\ndef f():\n    return len(list(collections.Counter({'a': 10**12}).elements()))",
    "import math\ndef f():\n    return math.factorial(10**7)",
    "import math\ndef f():\n    return math.comb(10**6, 5 * 10**5)",
    "import math\ndef f():\n    return math.prod([10**4000] * 10**5)",
    "def f():\n    return (1).to_bytes(10**10, 'big')",
    "def f():\n    return sorted(range(10**11))",
    "def f():\n    x = 3\n    while True:\n        x = x * x",
    *_blocks(
        """
def f():
    while True:
        try:
            pass
        except BaseException:
            pass
----
def f():
    try:
        while True:
            pass
    except BaseException:
        return 'swallowed'
----
def f():
    def g(n):
        try:
            return g(n + 1)
        except BaseException:
            return g(n + 1)
    return g(0)
----
def f():
    n = 0
    while True:
        try:
            n += 1
        except:
            pass
        finally:
            continue
"""
    ),
]


@pytest.mark.parametrize("source", RUNAWAYS, ids=range(len(RUNAWAYS)))
def test_runaway_tools_stop_fast(source: str) -> None:
    tb = Toolbox(
        {"f": source, "ok": "def ok():\n    return sum(i for i in range(100))"},
        step_budget=100_000,
        time_limit=0.3,
    )
    t0 = time.perf_counter()
    out = tb.call("f", {})
    assert time.perf_counter() - t0 < 10.0  # terminates (a generous bound: CI machines are shared)
    assert not out.ok
    assert out.error in ("timeout", "resource"), out.output
    assert out.output.startswith("Error: ") and len(out.output) < 300
    assert tb.call("ok", {}) == ToolOutcome(True, "4950", None)
    # the failure is repeatable, not sticky across calls (which guard trips first, the clock or a size guard,
    # may depend on the machine's load for runaways that both spin and allocate)
    assert tb.call("f", {}).error in ("timeout", "resource")


def test_default_budget_times_out_quickly() -> None:
    tb = Toolbox({"f": "def f():\n    while True:\n        pass"})
    t0 = time.perf_counter()
    out = tb.call("f", {})
    assert time.perf_counter() - t0 < 10.0  # terminates (a generous bound: CI machines are shared)
    assert out == ToolOutcome(False, "Error: tool 'f' timed out (step budget of 1000000 exceeded)", "timeout")


def test_memory_growth_backstop() -> None:
    src = "def f():\n    keep = []\n    while True:\n        keep.append('x' * 1000000 + str(len(keep)))\n"
    out = Toolbox({"f": src}, max_memory=100_000_000).call("f", {})
    assert out.error == "resource" and "memory growth" in out.output


HEAVY = "def f():\n    n = 0\n    while True:\n        n += len(sorted(range(300000)))\n"


def test_wall_clock_limit_in_main_thread_restores_signal_state() -> None:
    def previous(signum, frame):  # pragma: no cover - must not fire
        raise AssertionError("foreign alarm handler called")

    old = signal.signal(signal.SIGALRM, previous)
    try:
        tb = Toolbox({"f": HEAVY}, time_limit=0.2)
        t0 = time.perf_counter()
        out = tb.call("f", {})
        assert time.perf_counter() - t0 < 10.0  # terminates (a generous bound: CI machines are shared)
        assert out.error == "timeout" and "time limit" in out.output
        assert signal.getsignal(signal.SIGALRM) is previous
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    finally:
        signal.signal(signal.SIGALRM, old)


def test_wall_clock_limit_outside_main_thread() -> None:
    tb = Toolbox({"f": HEAVY}, time_limit=0.2)
    result: list[ToolOutcome] = []
    t = threading.Thread(target=lambda: result.append(tb.call("f", {})))
    t0 = time.perf_counter()
    t.start()
    t.join(5)
    assert time.perf_counter() - t0 < 10.0  # terminates (a generous bound: CI machines are shared)
    assert result and result[0].error == "timeout"


def test_huge_output_is_truncated() -> None:
    sources = {"f": "def f(n):\n    return 'x' * n", "g": "def g():\n    return [{'k': 'v' * 50}] * 10000"}
    tb = Toolbox(sources)
    for name, args in (("f", {"n": 100_000}), ("g", {})):
        out = tb.call(name, args)
        assert out.ok and len(out.output) == 16_384 and out.output.endswith("...[truncated]")
    small = Toolbox({"f": "def f():\n    return 'y' * 500"}, max_output_chars=100).call("f", {})
    assert len(small.output) == 100 and small.output.endswith("[truncated]")


# --------------------------------------------------------------------------------------- 4./5. args, state


def test_wrong_arguments(box: Toolbox) -> None:
    for args in ({}, {"city": "Oslo", "bogus": 1}, {"unit": "celsius"}):
        out = box.call("get_weather", args)
        assert (out.ok, out.error) == (False, "bad_arguments"), out
        assert out.output.startswith("Error: bad arguments for tool 'get_weather'")
    out = box.call("get_weather", {"city": 5})  # TypeError inside the tool is an exception, not bad arguments
    assert out.error == "exception" and "AttributeError" in out.output
    out = box.call("get_currency", {"country": "Atlantis"})
    assert out == ToolOutcome(False, "Error: ValueError: no currency for Atlantis", "exception")
    with pytest.raises(KeyError):
        box.call("nope", {})


def test_state_is_shared_with_caller(box: Toolbox) -> None:
    state = _state()
    out = box.call("book_flight", {"flight_id": "FL1", "passenger": "Ann"}, state)
    assert json.loads(out.output) == {"booking_id": "BK100", "status": "confirmed"}
    assert state["next_booking"] == 101 and state["flights"]["FL1"]["seats_left"] == 2
    assert state["bookings"]["BK100"]["passenger"] == "Ann"
    out = box.call("book_flight", {"flight_id": "FL1", "passenger": "Bob"}, state)
    assert json.loads(out.output)["booking_id"] == "BK101" and state["flights"]["FL1"]["seats_left"] == 1
    other = _state()
    box.call("book_flight", {"flight_id": "FL1", "passenger": "Cy"}, other)
    assert other["next_booking"] == 101 and state["next_booking"] == 102
    assert "error" in json.loads(box.call("book_flight", {"flight_id": "ZZ", "passenger": "A"}, state).output)


# ------------------------------------------------------------------------------------------- 6. hypothesis

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(sorted(EXAMPLES)),
    args=st.dictionaries(
        st.sampled_from(["city", "unit", "country", "flight_id", "passenger", "x"]) | st.text(max_size=5),
        json_values,
        max_size=4,
    ),
    with_state=st.booleans(),
)
def test_example_tools_never_raise(box: Toolbox, name: str, args: dict, with_state: bool) -> None:
    out = box.call(name, args, _state() if with_state else None)
    assert isinstance(out, ToolOutcome) and isinstance(out.output, str)
    assert len(out.output) <= 16_384
    assert out.ok == (out.error is None)
    assert out.error in (None, "exception", "bad_arguments")


# --------------------------------------------------------------------------------------------------- 7./8.


def test_serialize_output_follows_ftrl_rule() -> None:
    for value in ({"a": "é", "b": [1, 2.5, None, True]}, [1, "ü", {"x": {}}], [], {}):
        assert serialize_output(value) == json.dumps(value, ensure_ascii=False)
    for value in ("plain text", 42, 2.5, None, True, (1, 2), {1, 2}):
        assert serialize_output(value) == str(value)
    assert serialize_output({"s": {3}}) == '{"s": "{3}"}'  # default=str for non-JSON members
    assert serialize_output({(1, 2): 3}) == "{(1, 2): 3}"  # non-str keys: fall back to str()
    assert serialize_output("x" * 50, max_chars=20) == "xxxxx ...[truncated]"
    cyclic: list = []
    cyclic.append(cyclic)
    assert len(serialize_output(cyclic, max_chars=100)) <= 100


def test_compile_cache_compiles_each_source_once() -> None:
    src = "def cached_tool():\n    return 'cached-' + str(12345)\n"
    before = compile_tool_source.cache_info()
    a, b = Toolbox({"cached_tool": src}), Toolbox({"cached_tool": src})
    after = compile_tool_source.cache_info()
    assert after.misses == before.misses + 1 and after.hits == before.hits + 1
    assert a.call("cached_tool", {}) == b.call("cached_tool", {}) == ToolOutcome(True, "cached-12345", None)
    shared = Toolbox({"get_weather": WEATHER, "other": WEATHER + "\ndef other():\n    return 1\n"})
    assert shared.names == ("get_weather", "other")


def test_source_errors_name_the_tool() -> None:
    with pytest.raises(ToolSourceError, match="'missing'"):
        Toolbox({"missing": WEATHER})
    with pytest.raises(ToolSourceError, match="'bad'"):
        Toolbox({"bad": "def bad(:\n    pass"})
    with pytest.raises(ToolSourceError, match="'loop'"):
        Toolbox({"loop": "while True:\n    pass\ndef loop():\n    pass"}, step_budget=10_000)
    with pytest.raises(ToolSourceError, match="'notfn'"):
        Toolbox({"notfn": "notfn = 3"})


def test_overhead_is_small(box: Toolbox) -> None:
    """Loose sanity bound only (CI machines are noisy); the real numbers are in the report."""
    args = {"city": "Cairo"}
    t0 = time.perf_counter()
    for _ in range(2000):
        box.call("get_weather", args)
    assert (time.perf_counter() - t0) / 2000 < 100e-6
