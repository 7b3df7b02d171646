"""FlightBooking: a procedurally generated airline world with read and write tools (FTRL scenario kinds).

This module holds the domain, reasoning-gym style: :class:`FlightBookingConfig`, :data:`TOOL_SOURCE` (the
text of :mod:`toolgym.construct.tool_code.flight_booking`: every tool as sandbox-safe Python reading/writing the
global ``state``) and :func:`generate`, which draws a small world plus a query whose sub-tasks chain real tool
outputs. Everything is drawn from the caller's numpy
``Generator`` (a few bulk calls, because ``generate`` runs on every env reset and must stay ~100 us).

Answers are chosen to be distinctive under FTRL's substring reward: ids, seat labels, cities, loyalty numbers
and integer prices >= 100; airline codes are digit+letter (``3K``) and booking letters avoid their letters so
one never appears inside another; every answer is checked not to occur in the query.

The kinds beyond FTRL's (:data:`toolgym.scenario.EXTRA_KINDS`) are drawn only when ``kind`` or ``kinds`` asks for
them, with the spec-built domains' semantics and their ``ask_user`` tool
(:func:`~toolgym.construct.document.ask_function`, source from :func:`~toolgym.construct.deploy.tool_source`),
and the same reward hooks (:attr:`~toolgym.scenario.Scenario.reply_answer`, the strict Solve-P/R/F1 of
:func:`~toolgym.reward.solve_scores_for`), which go by the kind alone. ``irrelevance`` is one call's
question whose answer is a value only its own record holds (a loyalty number, a gate, a city, a seat, or a payment
confirmation that only the payment would create); every tool that could return it is withheld (:data:`WITHHELD`)
and ``distractors + 1`` others are offered, so the query has no answer among them and has no sub-tasks.
``missing_info`` is one chain of one or ``hops`` calls that starts from "my booking" or "my flight": the id is in
neither the query nor any tool (no tool lists bookings or flights without a name or a route the query leaves
out), and a first sub-task asks the user for it; the world's ``user`` entry holds it for ``ask_user`` to reply
with. An env whose kinds include the extra ones offers ``ask_user`` in every scenario; the default mix draws
exactly as before.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from toolgym.construct.decompose import ask_question
from toolgym.construct.deploy import tool_source
from toolgym.construct.document import ASK_USER, ask_function
from toolgym.scenario import KindKnobs, Scenario, StateCheck, SubTask, tool_schema
from toolgym.splits import SCENARIO_IDS, split_of

NAME = "FlightBooking"
VERSION = 0

# ----------------------------------------------------------------------------------------------- tool source

# The tools are a module of their own, so ruff lints and formats them like the rest of toolgym; the env never
# imports it: the sandbox compiles its text, which every scenario records as its tools' source.
TOOL_SOURCE = resources.files("toolgym.construct.tool_code").joinpath("flight_booking.py").read_text(encoding="utf-8")

# ----------------------------------------------------------------------------------------------- schemas

_CABIN = {"type": "string", "enum": ["economy", "premium", "business"], "description": "Cabin class."}
_FLIGHT = {"type": "string", "pattern": "^FL[0-9]{4}$", "description": "Flight id, e.g. 'FL1234'."}
_BOOKING = {
    "type": "string",
    "pattern": "^BK[0-9A-Z]{4}$",
    "description": "Booking reference, e.g. 'BK3F9A'.",
}
_AIRPORT = {"type": "string", "pattern": "^[A-Z]{3}$", "description": "Three-letter IATA airport code."}
_AIRLINE = {
    "type": "string",
    "pattern": "^[0-9][A-Z]$",
    "description": "Two-character airline code, e.g. '3K'.",
}
_NAME = {"type": "string", "minLength": 1, "description": "Passenger full name, e.g. 'Elif Kim'."}
_DATE = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "description": "Date as YYYY-MM-DD."}


def _p(base: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    return {**base, "description": description} if description else dict(base)


_SCHEMA_LIST = [
    tool_schema(
        "search_flights",
        "Search bookable (not cancelled) flights on a route and date; returns each flight's id, airline, "
        "times "
        "and fares per cabin.",
        {
            "origin": _p(_AIRPORT, "Origin airport code."),
            "destination": _p(_AIRPORT, "Destination airport code."),
            "date": _DATE,
        },
        ["origin", "destination", "date"],
    ),
    tool_schema(
        "get_flight_details",
        "Schedule of one flight: airline code, origin, destination, date, times, duration, status.",
        {"flight_id": _FLIGHT},
        ["flight_id"],
    ),
    tool_schema(
        "get_flight_status",
        "Operational status of one flight: on_time/delayed/cancelled, delay in minutes and departure gate.",
        {"flight_id": _FLIGHT},
        ["flight_id"],
    ),
    tool_schema(
        "get_fare",
        "Current fare (USD) of one cabin on a flight.",
        {"flight_id": _FLIGHT, "cabin": _CABIN},
        ["flight_id", "cabin"],
    ),
    tool_schema(
        "get_seat_availability",
        "Number of seats left on a flight, for one cabin or (without cabin) for every cabin.",
        {"flight_id": _FLIGHT, "cabin": _CABIN},
        ["flight_id"],
    ),
    tool_schema(
        "get_baggage_policy",
        "Baggage rules of an airline: free checked bags per cabin, extra checked-bag fee, carry-on limit.",
        {"airline_code": _AIRLINE},
        ["airline_code"],
    ),
    tool_schema(
        "get_booking",
        "Full record of a booking: passenger, flight id, cabin, seat, amount, payment and status.",
        {"booking_id": _BOOKING},
        ["booking_id"],
    ),
    tool_schema(
        "get_airport_info",
        "Airport information: name, city, country and UTC offset.",
        {"code": _AIRPORT},
        ["code"],
    ),
    tool_schema(
        "find_bookings_by_passenger",
        "List the booking references (with cabin and status) held by a passenger.",
        {"name": _NAME},
        ["name"],
    ),
    tool_schema(
        "get_passenger_profile",
        "A registered passenger's profile: loyalty number, tier and miles balance.",
        {"name": _NAME},
        ["name"],
    ),
    tool_schema(
        "book_flight",
        "Book a registered passenger on a flight in a cabin; assigns the first free seat and returns the new "
        "(unpaid) booking with its reference and amount.",
        {
            "flight_id": _FLIGHT,
            "passenger": _p(_NAME, "Full name of a registered passenger."),
            "cabin": _CABIN,
        },
        ["flight_id", "passenger", "cabin"],
    ),
    tool_schema(
        "cancel_booking",
        "Cancel a confirmed booking; paid bookings are refunded in full. Returns the refund amount (USD).",
        {"booking_id": _BOOKING},
        ["booking_id"],
    ),
    tool_schema(
        "change_seat",
        "Move a confirmed booking to another free seat of its cabin; returns the previous and the new seat.",
        {
            "booking_id": _BOOKING,
            "seat": {
                "type": "string",
                "pattern": "^[0-9]{1,2}[A-F]$",
                "description": "Seat label, e.g. '22D'.",
            },
        },
        ["booking_id", "seat"],
    ),
    tool_schema(
        "pay_booking",
        "Pay an unpaid booking; returns the payment confirmation number and the amount charged.",
        {
            "booking_id": _BOOKING,
            "method": {
                "type": "string",
                "enum": ["card", "miles", "voucher"],
                "description": "Payment method.",
            },
        },
        ["booking_id", "method"],
    ),
    # near-miss distractors: plausible, never the data a sub-task asks for
    tool_schema(
        "search_flight",
        "Timetable overview of a route: which airlines operate it (no dates, no fares, no flight ids).",
        {
            "origin": _p(_AIRPORT, "Origin airport code."),
            "destination": _p(_AIRPORT, "Destination airport code."),
        },
        ["origin", "destination"],
    ),
    tool_schema(
        "get_flight_detail",
        "Onboard product of a flight: aircraft type, meal service, wifi.",
        {"flight_id": _FLIGHT},
        ["flight_id"],
    ),
    tool_schema(
        "get_booking_info",
        "Customer-service notes of a booking: contact preference and special requests.",
        {"booking_id": _BOOKING},
        ["booking_id"],
    ),
    tool_schema(
        "get_airline_contact",
        "Contact channels (website, email) of an airline.",
        {"airline_code": _AIRLINE},
        ["airline_code"],
    ),
    tool_schema(
        "get_fare_rules",
        "Refund and change rules of a cabin's fare on a flight.",
        {"flight_id": _FLIGHT, "cabin": _CABIN},
        ["flight_id", "cabin"],
    ),
    tool_schema(
        "get_lounge_access",
        "Lounges at an airport and who may use them.",
        {"airport_code": _AIRPORT},
        ["airport_code"],
    ),
    tool_schema(
        "get_weather",
        "Today's weather forecast at an airport.",
        {"airport_code": _AIRPORT},
        ["airport_code"],
    ),
    tool_schema(
        "get_seat_map",
        "Seat layout (row range and seat letters) of a cabin on a flight; does not show occupancy.",
        {"flight_id": _FLIGHT, "cabin": _CABIN},
        ["flight_id", "cabin"],
    ),
    tool_schema(
        "get_loyalty_benefits",
        "Benefits of a loyalty tier.",
        {"tier": {"type": "string", "enum": ["basic", "silver", "gold"], "description": "Loyalty tier."}},
        ["tier"],
    ),
    tool_schema(
        "get_check_in_window",
        "When online check-in opens and closes for a flight.",
        {"flight_id": _FLIGHT},
        ["flight_id"],
    ),
    tool_schema(
        "get_booking_status",
        "Only the status (confirmed/cancelled) of a booking.",
        {"booking_id": _BOOKING},
        ["booking_id"],
    ),
    tool_schema(
        "get_airport_details",
        "Terminals and public transport of an airport.",
        {"code": _AIRPORT},
        ["code"],
    ),
]
SCHEMAS: dict[str, dict[str, Any]] = {s["function"]["name"]: s for s in _SCHEMA_LIST}
CORE_TOOLS = tuple(name for name in SCHEMAS)[:14]
NEAR_MISS_TOOLS = tuple(name for name in SCHEMAS)[14:]
WRITE_TOOLS = ("book_flight", "cancel_booking", "change_seat", "pay_booking")
# ask_user as the spec-built domains offer it: the same schema and sandboxed source (reading state["user"])
ASK_SCHEMA = ask_function().schema()
ASK_SOURCE = tool_source(ask_function())

# ----------------------------------------------------------------------------------------------- config


@dataclass
class FlightBookingConfig(KindKnobs):
    """Generator knobs; ``kind=None`` draws one of ``kinds`` uniformly per scenario (by default FTRL's four).

    ``kinds`` may name the extra kinds ``irrelevance`` and ``missing_info``; with either in ``kind`` or ``kinds``
    every scenario offers ``ask_user`` (the knobs mean what they mean in the spec-built domains'
    :class:`~toolgym.construct.pipeline.BuildConfig`).
    """

    kind: str | None = None
    hops: int = 2
    parallel: int = 2
    distractors: int = 3
    split: str | None = None  # "train" / "test": only scenarios whose id hashes into that split
    kinds: tuple[str, ...] | None = None

    def validate(self) -> None:
        self.check_kinds_and_split()
        for name, lo, hi in (("hops", 2, 4), ("parallel", 2, 4), ("distractors", 0, 12)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")


# ----------------------------------------------------------------------------------------------- world pools

_AIRPORT_POOL = [
    ("LHR", "London Heathrow", "London", "United Kingdom", "+00:00"),
    ("CDG", "Paris Charles de Gaulle", "Paris", "France", "+01:00"),
    ("FRA", "Frankfurt Main", "Frankfurt", "Germany", "+01:00"),
    ("AMS", "Amsterdam Schiphol", "Amsterdam", "Netherlands", "+01:00"),
    ("MAD", "Madrid Barajas", "Madrid", "Spain", "+01:00"),
    ("FCO", "Rome Fiumicino", "Rome", "Italy", "+01:00"),
    ("ZRH", "Zürich Kloten", "Zürich", "Switzerland", "+01:00"),
    ("JFK", "New York John F. Kennedy", "New York", "United States", "-05:00"),
    ("LAX", "Los Angeles International", "Los Angeles", "United States", "-08:00"),
    ("YYZ", "Toronto Pearson", "Toronto", "Canada", "-05:00"),
    ("NRT", "Tokyo Narita", "Tokyo", "Japan", "+09:00"),
    ("ICN", "Seoul Incheon", "Seoul", "South Korea", "+09:00"),
    ("DXB", "Dubai International", "Dubai", "United Arab Emirates", "+04:00"),
    ("SYD", "Sydney Kingsford Smith", "Sydney", "Australia", "+10:00"),
    ("GRU", "São Paulo Guarulhos", "São Paulo", "Brazil", "-03:00"),
    ("JNB", "Johannesburg O. R. Tambo", "Johannesburg", "South Africa", "+02:00"),
]
# digit+letter codes, letters disjoint from booking-id letters, so a code never hides inside another id
_AIRLINE_POOL = [
    ("3K", "Kestrel Air"),
    ("5J", "Juniper Airways"),
    ("7Q", "Quartz Air"),
    ("8M", "Meridian Air"),
    ("9W", "Willow Airways"),
    ("2P", "Pelican Air"),
    ("4V", "Vega Airlines"),
    ("6Z", "Zephyr Airlines"),
]
_FIRST = [
    "Amara",
    "Bruno",
    "Chiara",
    "Dmitri",
    "Elif",
    "Farah",
    "Goran",
    "Hiroshi",
    "Ingrid",
    "Jonas",
    "Kavya",
    "Lucia",
    "Mateo",
    "Nadia",
    "Oskar",
    "Priya",
    "Rafael",
    "Sofia",
    "Tomas",
    "Yusuf",
]
_LAST = [
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Kowalski",
    "Haddad",
    "Silva",
    "Novak",
    "Petrov",
    "Brennan",
    "Costa",
    "Fischer",
    "Gallo",
    "Ibrahim",
    "Jensen",
    "Kim",
    "Larsen",
    "Mendes",
    "Nguyen",
    "Quispe",
]
_BK_LETTERS = "ACDEFGHLNRTUXY"
_CABINS = ("economy", "premium", "business")
_CABIN_ROWS = {"business": (10, 13), "premium": (14, 17), "economy": (18, 39)}
_SEAT_LETTERS = "ABCDEF"
_METHODS = ("card", "miles", "voucher")
_TIERS = ("basic", "silver", "gold")

N_AIRPORTS, N_AIRLINES, N_ROUTES, N_DATES = 8, 6, 6, 2
N_FLIGHTS, N_BOOKINGS, N_PASSENGERS = 24, 8, 12


def _bounds() -> tuple[np.ndarray, np.ndarray, dict[str, slice]]:
    """Low bound and width of every integer the world needs, so one uniform draw yields them all."""
    blocks = [
        # gap, route, date, airline, dep slot, dur/5, eco, +prem, +bus, seats e/p/b, status, delay/5, gate
        (
            "flights",
            N_FLIGHTS,
            [
                (1, 371),
                (0, N_ROUTES),
                (0, N_DATES),
                (0, N_AIRLINES),
                (20, 92),
                (9, 121),
                (100, 900),
                (80, 500),
                (300, 1500),
                (0, 40),
                (0, 16),
                (0, 9),
                (0, 20),
                (3, 37),
                (0, len(_GATES)),
            ],
        ),
        # cabin, row draw, seat letter, id digit, id letter, id digit, id letter
        ("bookings", N_BOOKINGS, [(0, 3), (0, 1000), (0, 6), (0, 10), (0, 14), (0, 10), (0, 14)]),
        ("passengers", N_PASSENGERS, [(100000, 1000000), (0, 3), (1000, 100000)]),
        ("airlines", N_AIRLINES, [(0, 2), (1, 3), (2, 4), (100, 251), (7, 13)]),
        ("dates", N_DATES, [(1, 13), (1, 29)]),
        ("routes", N_ROUTES, [(0, N_AIRPORTS - 1)]),
        ("counters", 1, [(1000, 9000), (10000, 90000)]),
    ]
    lows: list[int] = []
    highs: list[int] = []
    spans: dict[str, slice] = {}
    for name, count, cols in blocks:
        start = len(lows)
        for _ in range(count):
            lows.extend(c[0] for c in cols)
            highs.extend(c[1] for c in cols)
        spans[name] = slice(start, len(lows))
    low = np.array(lows, dtype=np.float64)
    return low, np.array(highs, dtype=np.float64) - low, spans


_HHMM = [f"{m // 60:02d}:{m % 60:02d}" for m in range(0, 1440, 5)]  # index = minutes // 5
_GATES = [f"{letter}{n}" for letter in "ABCDE" for n in range(10, 60)]  # letter + two digits: never a prefix
_STATUS = ["cancelled", "delayed", "delayed", "delayed"] + ["on_time"] * 16
_LOWS, _WIDTHS, _SPANS = _bounds()
_N_INTS = len(_LOWS)
# permutation keys, rows: airports, airlines, first names, last names, booked flights; pad columns sort last
_PERM_POOLS = (len(_AIRPORT_POOL), len(_AIRLINE_POOL), len(_FIRST), len(_LAST), N_FLIGHTS)
_PERM_PAD = np.array([[0.0] * n + [2.0] * (24 - n) for n in _PERM_POOLS])
_N_WORLD = _N_INTS + _PERM_PAD.size
_N_DICE = 128


def _groups(values: list[int], name: str, width: int) -> Any:
    """Rows of ``width`` consecutive values of block ``name`` (zip over one iterator: no slicing per row)."""
    it = iter(values[_SPANS[name]])
    return zip(*[it] * width, strict=False)


def _claim(value: int, taken: set[int], size: int = 0) -> int:
    """The first of ``value``, ``value + 1``, ... (modulo ``size`` if given) not in ``taken``, added to it.

    How a drawn column (bag fees, gates, loyalty numbers) is made distinct: a repeat moves to the next free value.
    """
    while value in taken:
        value = (value + 1) % size if size else value + 1
    taken.add(value)
    return value


def _world(u: np.ndarray) -> dict[str, Any]:
    """The airline world from a block of uniforms: integers and permutations in numpy, then plain JSON."""
    ints = (u[:_N_INTS] * _WIDTHS + _LOWS).astype(np.int64).tolist()
    perms = (u[_N_INTS:_N_WORLD].reshape(_PERM_PAD.shape) + _PERM_PAD).argsort(axis=1).tolist()

    airports = {}
    codes = []
    for i in perms[0][:N_AIRPORTS]:
        code, name, city, country, utc = _AIRPORT_POOL[i]
        codes.append(code)
        airports[code] = {"code": code, "name": name, "city": city, "country": country, "utc_offset": utc}

    airlines = {}
    carriers = []
    fees: set[int] = set()
    for i, (free_e, free_p, free_b, fee, carry) in zip(perms[1], _groups(ints, "airlines", 5), strict=False):
        code, name = _AIRLINE_POOL[i]
        fee = _claim(fee, fees)
        carriers.append(code)
        airlines[code] = {
            "code": code,
            "name": name,
            "free_bags": {"economy": free_e, "premium": free_p, "business": free_b},
            "bag_fee": fee,
            "carry_on_kg": carry,
        }

    dates: list[str] = []
    for month, day in _groups(ints, "dates", 2):
        date = f"2026-{month:02d}-{day:02d}"
        dates.append(date if date not in dates else f"2026-{month:02d}-{day + 1:02d}")
    routes = [(codes[i], codes[(i + 1 + off) % N_AIRPORTS]) for i, off in enumerate(ints[_SPANS["routes"]])]

    flights = {}
    fids = []
    number = 1000
    gates: set[int] = set()
    rows = _groups(ints, "flights", 15)
    for gap, rt, dt, al, slot, dur, eco, prem, bus, se, sp, sb, roll, delay, gate in rows:
        number += gap
        fid = f"FL{number}"
        fids.append(fid)
        gate = _claim(gate, gates, 250)
        dep = slot * 3
        arr = dep + dur
        origin, destination = routes[rt]
        flights[fid] = {
            "flight_id": fid,
            "airline": carriers[al],
            "origin": origin,
            "destination": destination,
            "date": dates[dt],
            "departure": _HHMM[dep],
            "arrival": _HHMM[arr % 288],
            "arrives_next_day": arr >= 288,
            "duration_minutes": dur * 5,
            "fares": {"economy": eco, "premium": eco + prem, "business": eco + prem + bus},
            "seats_left": {"economy": se, "premium": sp, "business": sb},
            "status": _STATUS[roll],
            "delay_minutes": delay * 5 if 0 < roll < 4 else 0,
            "gate": _GATES[gate],
        }

    passengers = {}
    names = []
    loyalty_seen: set[int] = set()
    for first, last, (loyalty, tier, miles) in zip(
        perms[2][:N_PASSENGERS], perms[3], _groups(ints, "passengers", 3), strict=False
    ):
        name = f"{_FIRST[first]} {_LAST[last]}"
        loyalty = _claim(loyalty, loyalty_seen)
        names.append(name)
        passengers[name] = {
            "name": name,
            "loyalty_number": f"LY{loyalty}",
            "tier": _TIERS[tier],
            "miles": miles,
        }

    bookings = {}
    seats: set[str] = set()
    for i, (fi, (cab, row, letter, d1, l1, d2, l2)) in enumerate(
        zip(perms[4][:N_BOOKINGS], _groups(ints, "bookings", 7), strict=False)
    ):
        cabin = _CABINS[cab]
        lo, hi = _CABIN_ROWS[cabin]
        row = lo + row % (hi - lo + 1)
        seat = f"{row}{_SEAT_LETTERS[letter]}"
        while seat in seats:
            letter = (letter + 1) % 6
            seat = f"{row}{_SEAT_LETTERS[letter]}"
        seats.add(seat)
        bid = f"BK{d1}{_BK_LETTERS[l1]}{d2}{_BK_LETTERS[l2]}"
        while bid in bookings:
            d1 = (d1 + 1) % 10
            bid = f"BK{d1}{bid[3:]}"
        fid = fids[fi]
        paid = i % 2 == 0
        bookings[bid] = {
            "booking_id": bid,
            "passenger": names[i],
            "flight_id": fid,
            "cabin": cabin,
            "seat": seat,
            "amount": flights[fid]["fares"][cabin],
            "currency": "USD",
            "paid": paid,
            "payment_method": "card" if paid else None,
            "status": "confirmed",
        }
    next_booking, next_payment = ints[_SPANS["counters"]]
    return {
        "currency": "USD",
        "airports": airports,
        "airlines": airlines,
        "flights": flights,
        "bookings": bookings,
        "passengers": passengers,
        "counters": {"next_booking": next_booking, "next_payment": next_payment},
    }


# ------------------------------------------------------------------------------------------ sub-task steps

# step -> (tool, input entity type, output entity type or None when the answer ends the chain)
# types: P passenger name, B booking id, F flight id, A airline code, T airport code, R route+date,
# N booking created by the chain
_STEPS: dict[str, tuple[str, str, str | None]] = {
    "p_booking": ("find_bookings_by_passenger", "P", "B"),
    "p_loyalty": ("get_passenger_profile", "P", None),
    "p_miles": ("get_passenger_profile", "P", None),
    "b_flight": ("get_booking", "B", "F"),
    "b_passenger": ("get_booking", "B", "P"),
    "b_seat": ("get_booking", "B", None),
    "b_cancel": ("cancel_booking", "B", None),
    "b_change": ("change_seat", "B", None),
    "b_pay": ("pay_booking", "B", None),
    "f_airline": ("get_flight_details", "F", "A"),
    "f_dest": ("get_flight_details", "F", "T"),
    "f_gate": ("get_flight_status", "F", None),
    "f_fare": ("get_fare", "F", None),
    "f_book": ("book_flight", "F", "N"),
    "n_pay": ("pay_booking", "N", None),
    "a_fee": ("get_baggage_policy", "A", None),
    "t_city": ("get_airport_info", "T", None),
    "r_cheapest": ("search_flights", "R", "F"),
}
_START_TYPES = ("P", "B", "F", "A", "T", "R")


# Steps whose answer is shared by many entities (several flights per airline / destination) are drawn less
# often, so an arbitrary wrong call rarely matches an expected answer by accident.
_STEP_WEIGHT = {"f_airline": 0.6, "f_dest": 0.3}
_Pool = tuple[list[tuple[str, ...]], list[float]]


def _pool(chains: list[tuple[str, ...]]) -> _Pool:
    """Chains with their cumulative draw weights (product of step weights)."""
    cumulative, total = [], 0.0
    for chain in chains:
        weight = 1.0
        for step in chain:
            weight *= _STEP_WEIGHT.get(step, 1.0)
        total += weight
        cumulative.append(total)
    return chains, [c / total for c in cumulative]


def _templates() -> dict[int, tuple[_Pool, _Pool]]:
    """All step chains of length 1..4 split into (read-only, with-write) pools; built once at import."""
    firsts = [(s,) for s, (_, t, _) in _STEPS.items() if t in _START_TYPES]
    chains: dict[int, list[tuple[str, ...]]] = {1: firsts}
    for n in range(2, 5):
        chains[n] = []
        for chain in chains[n - 1]:
            out = _STEPS[chain[-1]][2]
            for step, (_, t, _) in _STEPS.items():
                if out is not None and t == out and not (chain[-1] == "b_passenger" and step == "p_booking"):
                    chains[n].append((*chain, step))
    return {
        n: (_pool([c for c in cs if not _has_write(c)]), _pool([c for c in cs if _has_write(c)]))
        for n, cs in chains.items()
    }


def _has_write(chain: tuple[str, ...]) -> bool:
    return any(_STEPS[s][0] in WRITE_TOOLS for s in chain)


_TEMPLATES = _templates()

# irrelevance: step -> every tool that could return its answer (all withheld); ids are left out, since an id also
# sits in every record that refers to it. A seat label can come back from book_flight (another flight's first free
# seat) or from change_seat (the previous seat, or its error's example seat).
WITHHELD: dict[str, tuple[str, ...]] = {
    "p_loyalty": ("get_passenger_profile",),
    "f_gate": ("get_flight_status",),
    "t_city": ("get_airport_info",),
    "b_seat": ("get_booking", "change_seat", "book_flight"),
    "b_pay": ("pay_booking",),  # the confirmation number exists only once the payment is made
}
_IRRELEVANT = (
    _pool([(s,) for s in WITHHELD if not _has_write((s,))]),
    _pool([(s,) for s in WITHHELD if _has_write((s,))]),
)
# missing_info: chains starting from a booking or a flight, which the query calls "my booking" / "my flight"
_MINE = {"B": ("booking", "booking_id"), "F": ("flight", "flight_id")}
_EXAMPLE_IDS = ("FL1234", "BK3F9A")  # in the schemas' descriptions: never the id the user is asked for


def _missing_templates() -> dict[int, tuple[_Pool, _Pool]]:
    """The (read-only, with-write) chains of each length from a booking or a flight; no such chain is longer
    than 3 calls, so a longer ``hops`` gets the longest there are (the scenario's metadata records its length)."""
    out: dict[int, tuple[_Pool, _Pool]] = {}
    for n, pools in sorted(_TEMPLATES.items()):
        mine = tuple(_pool([c for c in chains if _STEPS[c[0]][1] in _MINE]) for chains, _ in pools)
        out[n] = mine if all(chains for chains, _ in mine) else out[n - 1]
    return out


_MISSING = _missing_templates()
_WRITE_SHARE = 0.35  # share of scenarios whose query includes a write sub-task


class _Dice:
    """Uniform draws served from a pre-drawn block: one rng call per 128 decisions instead of one each."""

    __slots__ = ("buf", "i", "rng")

    def __init__(self, rng: np.random.Generator, buf: list[float]) -> None:
        self.rng = rng
        self.buf = buf
        self.i = 0

    def unit(self) -> float:
        if self.i == len(self.buf):
            self.buf = self.rng.random(_N_DICE).tolist()
            self.i = 0
        self.i += 1
        return self.buf[self.i - 1]

    def below(self, n: int) -> int:
        return int(self.unit() * n)

    def pick(self, seq: Any) -> Any:
        return seq[int(self.unit() * len(seq))]

    def sample(self, seq: Any, k: int) -> list:
        """``k`` distinct items in random order (partial Fisher-Yates: k draws, not len(seq))."""
        items = list(seq)
        n = len(items)
        for i in range(k):
            j = i + int(self.unit() * (n - i))
            items[i], items[j] = items[j], items[i]
        return items[:k]

    def shuffle(self, items: list) -> list:
        for i in range(len(items) - 1, 0, -1):
            j = int(self.unit() * (i + 1))
            items[i], items[j] = items[j], items[i]
        return items


class _Plan:
    """Per-scenario bookkeeping: entities taken by earlier branches, counters consumed by write steps."""

    def __init__(self, state: dict[str, Any], dice: _Dice) -> None:
        self.state = state
        self.dice = dice
        self.used: set[str] = set()
        self.booked = False
        self.paid = False
        holders = {b["passenger"] for b in state["bookings"].values()}
        self.free = [n for n in state["passengers"] if n not in holders]
        self.routes: list[tuple[str, str, str]] | None = None

    def route_dates(self) -> list[tuple[str, str, str]]:
        if self.routes is None:
            groups: dict[tuple[str, str, str], int] = {}
            for f in self.state["flights"].values():
                if f["status"] != "cancelled":
                    key = (f["origin"], f["destination"], f["date"])
                    groups[key] = groups.get(key, 0) + 1
            self.routes = [k for k, n in groups.items() if n >= 2] or list(groups)
        return self.routes


def _start(plan: _Plan, kind: str) -> Any:
    """A random start entity of type ``kind`` that no earlier branch used."""
    s = plan.state
    if kind == "P":
        pool = [n for n in s["passengers"] if n not in plan.free]
    elif kind == "B":
        pool = list(s["bookings"])
    elif kind == "F":
        pool = list(s["flights"])
    elif kind == "A":
        pool = list(s["airlines"])
    elif kind == "T":
        pool = list(s["airports"])
    else:
        pool = plan.route_dates()
    value = plan.dice.pick(pool)
    return None if _key(value) in plan.used else value


def _key(value: Any) -> str:
    return "|".join(value) if isinstance(value, tuple) else value


def _run_step(plan: _Plan, step: str, value: Any, ctx: dict[str, Any]) -> tuple | None:
    """Gold call of ``step`` on entity ``value``: (args, answers, output entity, checks, new entities)."""
    s, dice = plan.state, plan.dice
    if step == "p_booking":
        bids = [b for b, rec in s["bookings"].items() if rec["passenger"] == value]
        return ({"name": value}, [bids[0]], bids[0], [], [bids[0]]) if len(bids) == 1 else None
    if step in ("p_loyalty", "p_miles"):
        person = s["passengers"][value]
        answer = person["loyalty_number"] if step == "p_loyalty" else str(person["miles"])
        return {"name": value}, [answer], None, [], []
    if step[0] == "b":
        b = s["bookings"][value]
        args = {"booking_id": value}
        if step == "b_flight":
            return args, [b["flight_id"]], b["flight_id"], [], [b["flight_id"]]
        if step == "b_passenger":
            return args, [b["passenger"]], b["passenger"], [], [b["passenger"]]
        if step == "b_seat":
            return args, [b["seat"]], None, [], []
        if step == "b_cancel":
            if not b["paid"]:
                return None
            return (
                args,
                [str(b["amount"])],
                None,
                [StateCheck(["bookings", value, "status"], "cancelled")],
                [],
            )
        if step == "b_change":
            lo, hi = _CABIN_ROWS[b["cabin"]]
            taken = {rec["seat"] for rec in s["bookings"].values()}
            seat = f"{lo + dice.below(hi - lo + 1)}{dice.pick(_SEAT_LETTERS)}"
            if seat in taken:
                return None
            ctx["seat"] = seat
            args["seat"] = seat
            return args, [b["seat"]], None, [StateCheck(["bookings", value, "seat"], seat)], []
        # b_pay
        if b["paid"] or plan.paid:
            return None
        return _pay(plan, value, b["amount"], ctx)
    if step == "n_pay":
        if plan.paid:
            return None
        return _pay(plan, value, ctx["amount"], ctx)
    if step[0] == "f":
        f = s["flights"][value]
        if step == "f_airline":
            return {"flight_id": value}, [f["airline"]], f["airline"], [], [f["airline"]]
        if step == "f_dest":
            return {"flight_id": value}, [f["destination"]], f["destination"], [], [f["destination"]]
        if step == "f_gate":
            return {"flight_id": value}, [f["gate"]], None, [], []
        if step == "f_fare":
            cabin = dice.pick(_CABINS)
            ctx["fare_cabin"] = cabin
            return {"flight_id": value, "cabin": cabin}, [str(f["fares"][cabin])], None, [], []
        # f_book
        cabin = ctx.get("cabin") or dice.pick(_CABINS)
        free = [n for n in plan.free if n not in plan.used]
        if plan.booked or not free or f["status"] == "cancelled" or f["seats_left"][cabin] <= 0:
            return None
        who = dice.pick(free)
        bid = f"BK{s['counters']['next_booking']}"
        ctx.update(cabin=cabin, who=who, amount=f["fares"][cabin])
        plan.booked = True
        checks = [
            StateCheck(["bookings", bid, "flight_id"], value),
            StateCheck(["bookings", bid, "passenger"], who),
            StateCheck(["bookings", bid, "cabin"], cabin),
        ]
        args = {"flight_id": value, "passenger": who, "cabin": cabin}
        return args, [bid, str(f["fares"][cabin])], bid, checks, [bid, who]
    if step == "a_fee":
        return {"airline_code": value}, [str(s["airlines"][value]["bag_fee"])], None, [], []
    if step == "t_city":
        return {"code": value}, [s["airports"][value]["city"]], None, [], []
    # r_cheapest
    origin, destination, date = value
    cabin = dice.pick(_CABINS)
    found = sorted(
        (f["fares"][cabin], f["flight_id"])
        for f in s["flights"].values()
        if f["origin"] == origin
        and f["destination"] == destination
        and f["date"] == date
        and f["status"] != "cancelled"
    )
    if len(found) > 1 and found[0][0] == found[1][0]:
        return None
    ctx["cabin"] = cabin
    fid = found[0][1]
    return {"origin": origin, "destination": destination, "date": date}, [fid], fid, [], [fid]


def _pay(plan: _Plan, bid: str, amount: int, ctx: dict[str, Any]) -> tuple:
    method = plan.dice.pick(_METHODS)
    ctx["method"] = method
    plan.paid = True
    confirmation = f"PAY{plan.state['counters']['next_payment']}"
    checks = [
        StateCheck(["bookings", bid, "paid"], True),
        StateCheck(["bookings", bid, "payment_method"], method),
    ]
    return {"booking_id": bid, "method": method}, [confirmation, str(amount)], None, checks, []


# ----------------------------------------------------------------------------------------------- query text


_START_TEXT = {"P": "{}", "B": "booking {}", "F": "flight {}", "A": "airline {}", "T": "airport {}"}


def _noun(step: str, x: str, ctx: dict[str, Any], value: Any) -> str:
    """Noun phrase for the entity ``step`` outputs, given the phrase ``x`` for its input."""
    if step == "p_booking":
        return f"{x}'s booking"
    if step == "b_flight":
        return f"the flight booked under {x}"
    if step == "b_passenger":
        return f"the passenger holding {x}"
    if step == "f_airline":
        return f"the airline operating {x}"
    if step == "f_dest":
        return f"the destination airport of {x}"
    if step == "r_cheapest":
        origin, destination, date = value
        return f"the cheapest {ctx['cabin']} flight from {origin} to {destination} on {date}"
    raise KeyError(step)


def _ask(step: str, x: str, ctx: dict[str, Any]) -> str:
    """The sentence asking for the final answer of ``step`` applied to the entity described by ``x``."""
    texts = {
        "p_booking": f"What is the booking reference of {x}?",
        "p_loyalty": f"What is the loyalty number of {x}?",
        "p_miles": f"How many loyalty miles does {x} have?",
        "b_flight": f"Which flight is booked under {x}?",
        "b_passenger": f"Who is the passenger on {x}?",
        "b_seat": f"Which seat is assigned on {x}?",
        "b_cancel": f"Please cancel {x} and tell me the refund amount.",
        "b_change": f"Please move {x} to seat {ctx.get('seat')} and tell me which seat it had before.",
        "b_pay": f"Please pay for {x} by {ctx.get('method')} and give me the confirmation and the amount.",
        "f_airline": f"Which airline code operates {x}?",
        "f_dest": f"Which airport code does {x} fly to?",
        "f_gate": f"From which gate does {x} depart?",
        "f_fare": f"What is the {ctx.get('fare_cabin')} fare of {x}?",
        "f_book": f"Please book {ctx.get('who')} in {ctx.get('cabin')} on {x} and tell me the new booking "
        f"reference and its price.",
        "a_fee": f"What is the extra checked-bag fee of {x}?",
        "t_city": f"In which city is {x}?",
        "r_cheapest": f"What is the flight number of {x}?",
    }
    return texts[step]


_Branch = tuple[list[SubTask], str, list[str]]


def _branch(plan: _Plan, pool: _Pool, first_id: int, after: str | None = None) -> _Branch | None:
    """One chain from ``pool`` on fresh entities: (sub-tasks, sentence, last answers), or None.

    With ``after`` (the id of the sub-task asking the user for the start, ``missing_info``) the sentence names the
    start only as "my booking" / "my flight" and the first call depends on that sub-task.
    """
    chains, cumulative = pool
    chain = chains[min(bisect.bisect_right(cumulative, plan.dice.unit()), len(chains) - 1)]
    start_kind = _STEPS[chain[0]][1]
    value = _start(plan, start_kind)
    if value is None or (after is not None and value in _EXAMPLE_IDS):
        return None
    booked, paid = plan.booked, plan.paid
    ctx: dict[str, Any] = {}
    entities = [_key(value)]
    results = []
    for step in chain:
        res = _run_step(plan, step, value, ctx)
        if res is None or any(e in plan.used for e in res[4]):
            plan.booked, plan.paid = booked, paid
            return None
        results.append((step, value, res))
        entities.extend(res[4])
        value = res[2]
    if len(set(entities)) != len(entities):
        plan.booked, plan.paid = booked, paid
        return None
    plan.used.update(entities)

    subs = []
    for k, (step, _, res) in enumerate(results):
        sid = f"s{first_id + k}"
        deps = [f"s{first_id + k - 1}"] if k else ([after] if after else [])
        # Several facts from one call form ONE expected answer "A, B" (every part must be in the output):
        # separate entries would each need their own call, since a call solves at most one.
        subs.append(SubTask(sid, _STEPS[step][0], res[0], [", ".join(res[1])], deps, res[3]))

    if after is not None:
        x = f"my {_MINE[start_kind][0]}"
    else:
        x = _START_TEXT[start_kind].format(results[0][1]) if start_kind != "R" else ""
    last = len(chain) - 1
    if chain[-1] == "n_pay":
        last -= 1  # book + pay read as one request
    for step, value_in, _ in results[:last]:
        x = _noun(step, x, ctx, value_in)
    if chain[-1] == "n_pay":
        sentence = (
            f"Please book {ctx['who']} in {ctx['cabin']} on {x}, pay for the new booking by {ctx['method']}, "
            f"and give me the payment confirmation and the amount charged."
        )
    elif chain[-1] == "r_cheapest":
        sentence = _ask("r_cheapest", _noun("r_cheapest", x, ctx, results[-1][1]), ctx)
    else:
        sentence = _ask(chain[-1], x, ctx)
    return subs, sentence, results[-1][2][1]


_INTROS = (
    "Please help me with these requests:",
    "I have a few questions:",
    "Could you handle the following?",
)


def _norm(text: str) -> str:
    return text.lower().replace(",", "").strip()


def _compose(plan: _Plan, kind: str, hops: int, parallel: int) -> tuple[list[SubTask], str, str] | None:
    """Sub-tasks, query and answer of one scenario of ``kind`` (for ``irrelevance``: of the hidden question)."""
    dice = plan.dice
    branches = parallel if kind.startswith("parallel") else 1
    length = hops if kind.endswith("multi_hop") else 1
    after = None
    if kind == "irrelevance":
        pools = _IRRELEVANT
    elif kind == "missing_info":
        length = hops if dice.unit() < 0.5 else 1
        pools, after = _MISSING[length], "s1"
    else:
        pools = _TEMPLATES[length]
    writer = dice.below(branches) if dice.unit() < _WRITE_SHARE else -1
    subs: list[SubTask] = []
    sentences: list[str] = []
    finals: list[str] = []
    for b in range(branches):
        for _ in range(12):
            got = _branch(plan, pools[1 if b == writer else 0], len(subs) + 1 + (after is not None), after)
            if got is not None:
                break
        else:
            return None
        subs.extend(got[0])
        sentences.append(got[1])
        finals.extend(got[2])
    if branches == 1:
        query = sentences[0]
    else:
        query = " ".join([dice.pick(_INTROS), *(f"({i}) {t}" for i, t in enumerate(sentences, 1))])
    if after is not None:  # the user's id of the start record, asked for first
        noun, key = next(v for v in _MINE.values() if v[1] in subs[0].arguments)
        ask = {"question": ask_question(noun)}
        subs.insert(0, SubTask(after, ASK_USER, ask, [subs[0].arguments[key]], [], []))
    q = _norm(query)
    per_tool: dict[str, set[str]] = {}
    for sub in subs:
        seen = per_tool.setdefault(sub.tool, set())
        for answer in sub.answers:
            a = _norm(answer)
            if a in q or a in seen:
                return None
            seen.add(a)
    return subs, query, ", ".join(finals)


# ----------------------------------------------------------------------------------------------- generate


def generate(rng: np.random.Generator, config: FlightBookingConfig) -> Scenario:
    """One FlightBooking scenario, drawn entirely from ``rng`` (same rng state -> identical scenario).

    With ``config.split`` set, draws until the scenario's id falls in that split (:mod:`toolgym.splits`).
    """
    config.validate()
    while True:
        scenario = _generate_one(rng, config)
        if config.split is None or split_of(scenario.id, SCENARIO_IDS) == config.split:
            scenario.metadata["split"] = config.split
            return scenario


def _generate_one(rng: np.random.Generator, config: FlightBookingConfig) -> Scenario:
    u = rng.random(_N_WORLD + _N_DICE)  # one rng call for the world and the first scenario decisions
    state = _world(u)
    dice = _Dice(rng, u[_N_WORLD:].tolist())
    kind = config.kind if config.kind is not None else dice.pick(config.mix)
    for _ in range(100):
        plan = _Plan(state, dice)
        got = _compose(plan, kind, config.hops, config.parallel)
        if got is not None:
            break
    else:  # pragma: no cover - every kind succeeds within a few attempts on every world
        raise RuntimeError("FlightBooking: could not compose a scenario")
    subs, query, answer = got

    k = config.distractors
    if kind == "irrelevance":  # no tool that could answer; as many tools as its single-hop twin offers
        withheld = next(WITHHELD[s] for s in WITHHELD if _STEPS[s][0] == subs[0].tool)
        needed: list[str] = []
        others = [t for t in CORE_TOOLS if t not in withheld]
        k += 1
        subs, answer = [], ""
    else:
        needed = list(dict.fromkeys(s.tool for s in subs))
        others = [t for t in CORE_TOOLS if t not in needed]
    if k <= len(others):
        extra = dice.sample(others, k)
    else:  # near-miss look-alikes only once the other real tools are used up
        extra = others + dice.sample(NEAR_MISS_TOOLS, k - len(others))
    names = needed + extra
    if config.offers_ask_user and ASK_USER not in names:
        names.append(ASK_USER)
    offered = dice.shuffle(names)
    if kind == "missing_info":
        state["user"] = {"knows": subs[0].answers[0]}
    multi = kind.endswith("multi_hop")
    par = kind.startswith("parallel")
    hops = config.hops if multi else (len(subs) - 1 if kind == "missing_info" else 1)
    metadata = {
        "domain": NAME,
        "version": VERSION,
        "kind": kind,
        "hops": hops,
        "parallel": config.parallel if par else 1,
        "distractors": config.distractors,
    }
    if config.kinds is not None:  # only when set, so that the default mix records what it always did
        metadata["kinds"] = list(config.kinds)
    return Scenario(
        id="flight-" + hashlib.sha256(f"{query}\n{answer}".encode()).hexdigest()[:10],
        kind=kind,
        messages=[{"role": "user", "content": query}],
        tools=[ASK_SCHEMA if name == ASK_USER else SCHEMAS[name] for name in offered],
        source={name: ASK_SOURCE if name == ASK_USER else TOOL_SOURCE for name in offered},
        state=state,
        subtasks=subs,
        answer=answer,
        metadata=metadata,
    )
