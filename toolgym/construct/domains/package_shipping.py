"""PackageShipping: senders, depots, the couriers based at them and the packages in the network.

Every courier is based at one depot; every package was sent by one sender, is handled by one depot and carried
by one courier, and each sender's latest package is one of their own. Senders hold packages, change the
delivery option and confirm deliveries. Chains run sender -> latest package -> courier -> depot.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolgym.construct import kit
from toolgym.construct.spec import Attr, Domain, Update

# (depot name, city)
DEPOTS = (
    ("Leeds North Hub", "Leeds"),
    ("Thamesmead Sorting Centre", "London"),
    ("Avonmouth Parcel Yard", "Bristol"),
    ("Trafford Park Depot", "Manchester"),
    ("Hillington Distribution Point", "Glasgow"),
    ("Castlemilk Logistics Base", "Edinburgh"),
    ("Wolverton Freight Terminal", "Milton Keynes"),
    ("Pengam Green Depot", "Cardiff"),
)
CITIES = tuple(sorted({d[1] for d in DEPOTS}))
SENDER_FIRST, SENDER_LAST = kit.FIRST[:11], kit.LAST
COURIER_FIRST = ("Aleksander", "Bianca", "Cormac", "Delphine", "Emeka", "Francesca", "Gideon", "Hyun", "Isolde")
COURIER_LAST = ("Abernathy", "Baptiste", "Cojocaru", "Delacroix", "Ekwueme", "Falkenberg", "Grimaldi", "Hollis")
MANAGERS = ("Rhiannon Pryce", "Oluwaseun Bakare", "Ewan MacLeod", "Priyanka Desai", "Stellan Ahlgren", "Tamsin Rowe")
PACKAGE_STATUSES = ("in_transit", "on_hold", "out_for_delivery", "delivered")
DELIVERY_OPTIONS = ("standard", "express", "parcel_locker", "neighbour", "depot_pickup")
SHIFTS = ("early", "day", "late")
VEHICLE_LETTERS = "ABCDEFGHJKLMNPRSTUVWXY"  # UK plate letters (no I, O, Q, Z)

SENDER = kit.entity(
    "sender",
    "a customer who sends packages",
    "^SD[0-9]{5}$",
    Attr("name", "name"),
    Attr("email", "email address"),
    Attr("account_number", "account number"),
    Attr("business", "business account status", type="boolean", answerable=False),
    Attr("last_package", "latest package", ref="package"),
)
DEPOT = kit.entity(
    "depot",
    "a depot that sorts and dispatches packages",
    "^DP[0-9]{5}$",
    Attr("name", "name"),
    Attr("city", "city", answerable=False, enum=CITIES),
    Attr("phone", "phone number"),
    Attr("manager", "manager"),
)
COURIER = kit.entity(
    "courier",
    "a courier based at a depot",
    "^CR[0-9]{5}$",
    Attr("name", "name"),
    Attr("depot_id", "depot", ref="depot"),
    Attr("vehicle_plate", "vehicle registration plate"),
    Attr("phone", "phone number"),
    Attr("shift", "shift", answerable=False, enum=SHIFTS),
)
PACKAGE = kit.entity(
    "package",
    "a package in the delivery network",
    "^PK[0-9]{5}$",
    Attr("sender_id", "sender", ref="sender"),
    Attr("depot_id", "handling depot", ref="depot"),
    Attr("courier_id", "courier", ref="courier"),
    Attr("tracking_number", "tracking number"),
    Attr("weight_g", "weight in grams", type="integer", answerable=False),
    Attr("status", "status", answerable=False, enum=PACKAGE_STATUSES),
    Attr("delivery_option", "delivery option", answerable=False, enum=DELIVERY_OPTIONS),
)
UPDATES = (
    Update(
        name="hold_package",
        entity="package",
        description="Hold a package that is in transit at its depot.",
        request="hold {target} at the depot",
        confirmation_prefix="HD",
        sets={"status": "on_hold"},
        require={"status": "in_transit"},
    ),
    Update(
        name="change_delivery_option",
        entity="package",
        description="Change the delivery option of a package that is in transit.",
        request="change the delivery option of {target} to {value}",
        confirmation_prefix="DO",
        require={"status": "in_transit"},
        param=Attr("delivery_option", "delivery option", answerable=False, enum=DELIVERY_OPTIONS),
    ),
    Update(
        name="confirm_delivery",
        entity="package",
        description="Confirm receipt of a package that is out for delivery.",
        request="confirm delivery of {target}",
        confirmation_prefix="CD",
        sets={"status": "delivered"},
        require={"status": "out_for_delivery"},
    ),
)

N_SENDER, N_DEPOT, N_COURIER, N_PACKAGE = 8, 6, 7, 11
_N_DEPOTS, _N_SENDER_FIRST, _N_COURIER_FIRST = len(DEPOTS), len(SENDER_FIRST), len(COURIER_FIRST)
_N_DRAWS = _N_DEPOTS + _N_SENDER_FIRST + _N_COURIER_FIRST + 16 + 2 * N_SENDER + 4 * N_COURIER + 3 * N_PACKAGE
# Precomputed strings: f-strings with format specs cost ~1 us each here, a table lookup ~0.1 us.
PLATE_PAIRS = tuple(a + b for a in VEHICLE_LETTERS for b in VEHICLE_LETTERS)
SENDERS = kit.full_names(SENDER_FIRST, SENDER_LAST)
SENDER_EMAILS = kit.email_names(SENDER_FIRST, SENDER_LAST)
COURIERS = kit.full_names(COURIER_FIRST, COURIER_LAST)
# Package statuses by position mod 6: at least two in transit, one out for delivery, one delivered.
STATUS_CYCLE = ("in_transit", "out_for_delivery", "in_transit", "delivered", "on_hold", "out_for_delivery")


def world(rng: np.random.Generator) -> dict[str, Any]:
    """8 senders, 6 depots, 7 couriers, 11 packages.

    Depot 0 has two couriers, the others one; packages cycle over senders and couriers from random offsets
    (a package is handled by its courier's depot), and each sender's latest package is the last one they sent,
    so every ref column holds unique and repeated values.
    """
    u = kit.Uniforms(rng, _N_DRAWS)
    depots = u.order(_N_DEPOTS)
    sfirst = u.order(_N_SENDER_FIRST)
    cfirst = u.order(_N_COURIER_FIRST)
    g = u.take(16)
    sender_ids = kit.strided_ids("SD", N_SENDER, g[0], g[1])
    depot_ids = kit.strided_ids("DP", N_DEPOT, g[0], g[1], offset=36013)
    courier_ids = kit.strided_ids("CR", N_COURIER, g[2], g[3])
    package_ids = kit.strided_ids("PK", N_PACKAGE, g[4], g[5])

    senders, depot_table, couriers, packages = {}, {}, {}, {}
    d = u.take(2 * N_SENDER)
    b = int(g[6] * 90000)
    for i in range(N_SENDER):
        sid, x = sender_ids[i], d[2 * i]
        person = sfirst[i] * 10 + int(x * 10)
        senders[sid] = {
            "sender_id": sid,
            "name": SENDERS[person],
            "email": SENDER_EMAILS[person] + str(i) + "@mail.example",
            "account_number": "ACC-"
            + str(10000 + (b + i * 7919) % 90000)
            + "-"
            + kit.PAIRS[int(d[2 * i + 1] * 400)]
            + str(i),
            "business": i % 3 == 0,
            "last_package": "",
        }
    b, m = int(g[7] * 9000), int(g[8] * len(MANAGERS))
    for i in range(N_DEPOT):
        did = depot_ids[i]
        name, city = DEPOTS[depots[i]]
        depot_table[did] = {
            "depot_id": did,
            "name": name,
            "city": city,
            "phone": "+44 300 " + str(100 + (b + i * 137) % 900) + " " + str(1000 + (b * 7 + i * 2713) % 9000),
            "manager": MANAGERS[(m + i) % len(MANAGERS)],
        }
    d = u.take(4 * N_COURIER)
    b = int(g[9] * 9000)
    for i in range(N_COURIER):
        cid, x, y, z, w = courier_ids[i], d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]
        couriers[cid] = {
            "courier_id": cid,
            "name": COURIERS[cfirst[i] * 8 + int(x * 8)],
            "depot_id": depot_ids[i % N_DEPOT],
            "vehicle_plate": PLATE_PAIRS[int(y * 484)] + str(10 + int(z * 90)) + " " + kit.PAIRS[int(w * 400)] + str(i),
            "phone": "+44 7700 " + str(100000 + (b * 97 + i * 30011) % 900000),
            "shift": SHIFTS[int(z * 3)],
        }
    d = u.take(3 * N_PACKAGE)
    off_s, off_c = int(g[10] * N_SENDER), int(g[12] * N_COURIER)
    for i in range(N_PACKAGE):
        pid, x, y, z = package_ids[i], d[3 * i], d[3 * i + 1], d[3 * i + 2]
        sid, c = sender_ids[(off_s + i) % N_SENDER], (off_c + 3 * i) % N_COURIER
        packages[pid] = {
            "package_id": pid,
            "sender_id": sid,
            "depot_id": depot_ids[c % N_DEPOT],  # the depot its courier is based at
            "courier_id": courier_ids[c],
            "tracking_number": "TRK" + kit.PAIRS[int(x * 400)] + str(i) + kit.PAIRS[int(z * 400)],
            "weight_g": 150 + int(y * 9850),
            "status": STATUS_CYCLE[i % 6],
            "delivery_option": DELIVERY_OPTIONS[int(z * 5)],
        }
        senders[sid]["last_package"] = pid
    counters = kit.uniform_counters(UPDATES, g[13:16])
    return {"senders": senders, "depots": depot_table, "couriers": couriers, "packages": packages, "counters": counters}


DESCRIPTION = "Senders, depots, couriers and packages; look up, hold, change delivery option, confirm delivery."
DOMAIN = Domain("PackageShipping", 0, DESCRIPTION, (SENDER, DEPOT, COURIER, PACKAGE), UPDATES, world)
