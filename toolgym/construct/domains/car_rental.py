"""CarRental: rental branches, the cars stationed at them, customers and their rentals.

Customers cancel reserved rentals, upgrade the booked car class and add insurance. Chains: customer ->
latest rental -> car -> branch, rental -> customer, car -> branch. Mileages are 5-digit integers; every other
digit run in the world is at most 4 digits long, so no answer hides inside another record.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolgym.construct import kit
from toolgym.construct.spec import Attr, Domain, Update

CITIES = ("Denver", "Phoenix", "Seattle", "Boston", "Atlanta", "Chicago", "Portland", "Dallas")
LOCATIONS = ("Airport", "Downtown", "Central Station", "Convention Center", "Midtown")
HOURS = ("06:00-22:00", "07:00-21:00", "08:00-20:00", "00:00-24:00")
MODELS = (
    "Toyota Corolla",
    "Volkswagen Golf",
    "Ford Explorer",
    "Hyundai Tucson",
    "BMW 5 Series",
    "Kia Picanto",
    "Tesla Model 3",
    "Skoda Octavia",
    "Fiat Panda",
    "Mercedes E-Class",
    "Nissan Qashqai",
    "Renault Clio",
)
CLASSES = ("economy", "compact", "midsize", "suv", "premium")
MODEL_CLASS = (1, 1, 3, 3, 4, 0, 4, 2, 0, 4, 3, 0)
FUELS = ("petrol", "diesel", "hybrid", "electric")
RENTAL_STATUSES = ("reserved", "active", "returned", "cancelled")
# Status of rental i is STATUS_CYCLE[(i + offset) % 10]: 5 reserved, 2 active, 2 returned, 1 cancelled.
STATUS_CYCLE = (0, 1, 0, 2, 0, 3, 0, 1, 2, 0)
PLATE_CHARS = "BCDFGHJKLMNPRSTVWXZ"

BRANCH = kit.entity(
    "branch",
    "a rental branch",
    "^BR[0-9]{4}$",
    Attr("name", "name"),
    Attr("city", "city", answerable=False),
    Attr("phone", "phone number"),
    Attr("manager", "branch manager"),
    Attr("opening_hours", "opening hours", answerable=False),
    table="branches",
)
CAR = kit.entity(
    "car",
    "a car in the rental fleet",
    "^VH[0-9]{4}$",
    Attr("branch_id", "home branch", ref="branch"),
    Attr("plate", "license plate"),
    Attr("model", "model"),
    Attr("car_class", "car class", answerable=False, enum=CLASSES),
    Attr("fuel", "fuel type", answerable=False, enum=FUELS),
    Attr("mileage_km", "mileage in kilometres", type="integer"),
)
CUSTOMER = kit.entity(
    "customer",
    "a registered rental customer",
    "^CU[0-9]{4}$",
    Attr("name", "full name"),
    Attr("email", "email address"),
    Attr("license_number", "driving license number"),
    Attr("phone", "phone number"),
    Attr("last_rental", "latest rental", ref="rental"),
)
RENTAL = kit.entity(
    "rental",
    "a car rental agreement",
    "^RN[0-9]{4}$",
    Attr("car_id", "car", ref="car"),
    Attr("customer_id", "customer", ref="customer"),
    Attr("agreement_code", "agreement code"),
    Attr("pickup_date", "pickup date", answerable=False),
    Attr("car_class", "booked car class", answerable=False, enum=CLASSES),
    Attr("status", "status", answerable=False, enum=RENTAL_STATUSES),
    Attr("insurance", "insurance status", type="boolean", answerable=False),
)
UPDATES = (
    Update(
        name="cancel_rental",
        entity="rental",
        description="Cancel a reserved rental before pickup.",
        request="cancel {target}",
        confirmation_prefix="CX",
        sets={"status": "cancelled"},
        require={"status": "reserved"},
    ),
    Update(
        name="upgrade_car_class",
        entity="rental",
        description="Change the booked car class of a reserved rental.",
        request="change the car class of {target} to {value}",
        confirmation_prefix="UG",
        require={"status": "reserved"},
        param=Attr("car_class", "booked car class", answerable=False, enum=CLASSES),
    ),
    Update(
        name="add_insurance",
        entity="rental",
        description="Add full insurance cover to a reserved rental that has none.",
        request="add insurance to {target}",
        confirmation_prefix="IR",
        sets={"insurance": True},
        require={"status": "reserved", "insurance": False},
    ),
)


def world(rng: np.random.Generator) -> dict[str, Any]:
    """5 branches, 9 cars, 7 customers, 10 rentals; every customer has rented at least once."""
    n_b, n_c, n_u, n_r = 5, 9, 7, 10
    r = kit.words(rng, 2 + n_b + n_c + n_u + n_r)
    g, c = r[0], r[1]
    city0, loc0, mgr0, model0 = (g >> 10) % 8, (g >> 13) % 5, (g >> 16) % 8, (g >> 19) % 12
    branch_off, car_off, cust_off, status_off = (g >> 23) % n_b, (g >> 26) % n_c, (g >> 30) % n_u, (g >> 33) % 10
    ins_off, day0 = (g >> 37) % 3, (g >> 39) % 8
    P = PLATE_CHARS

    branches = {}
    branch_ids = []
    for i in range(n_b):
        d = r[2 + i]
        bid = kit.bucket_id("BR", i, d, width=1800)
        city = CITIES[(city0 + i) % 8]
        branch_ids.append(bid)
        branches[bid] = {
            "branch_id": bid,
            "name": f"{city} {LOCATIONS[(loc0 + i) % 5]}",
            "city": city,
            "phone": kit.phone("+1-800", i, d >> 11, width=1800),
            "manager": f"{kit.STAFF_FIRST[(mgr0 + i) % 8]} {kit.STAFF_LAST[(mgr0 + 3 * i) % 8]}",
            "opening_hours": HOURS[(d >> 29) % 4],
        }

    cars = {}
    car_ids = []
    car_class = []
    for i in range(n_c):
        d = r[2 + n_b + i]
        vid = kit.bucket_id("VH", i, d)
        m = (model0 + i) % 12
        car_ids.append(vid)
        car_class.append(MODEL_CLASS[m])
        cars[vid] = {
            "car_id": vid,
            "branch_id": branch_ids[(branch_off + 2 * i) % n_b],
            "plate": f"{kit.letters(d, 10, 2, P)}-{100 + 100 * i + (d >> 20) % 100}-{kit.letters(d, 27, 2, P)}",
            "model": MODELS[m],
            "car_class": CLASSES[MODEL_CLASS[m]],
            "fuel": FUELS[3 if m == 6 else (d >> 35) % 3],
            "mileage_km": 10000 + 9000 * i + (d >> 40) % 9000,
        }

    customers = {}
    for i, d, uid, name, email in kit.people("CU", r[2 + n_b + n_c : 2 + n_b + n_c + n_u], g):
        customers[uid] = {
            "customer_id": uid,
            "name": name,
            "email": f"{email}@drivemail.example",
            "license_number": f"DL-{kit.letters(d, 10, 2)}{kit.bucket(i, d >> 20)}",
            "phone": kit.phone("+1-303", i, d >> 30),
            "last_rental": "",
        }
    cust_ids = list(customers)

    rentals = {}
    for i in range(n_r):
        d = r[2 + n_b + n_c + n_u + i]
        rid = kit.bucket_id("RN", i, d)
        k = (car_off + 4 * i) % n_c
        uid = cust_ids[(cust_off + i) % n_u]
        rentals[rid] = {
            "rental_id": rid,
            "car_id": car_ids[k],
            "customer_id": uid,
            "agreement_code": f"RA-{kit.letters(d, 10, 4)}{i:02d}",
            "pickup_date": f"2025-08-{1 + day0 + 2 * i:02d}",
            "car_class": CLASSES[car_class[k]],
            "status": RENTAL_STATUSES[STATUS_CYCLE[(status_off + i) % 10]],
            "insurance": (i + ins_off) % 3 == 0,
        }
        customers[uid]["last_rental"] = rid
    counters = kit.word_counters(UPDATES, c)
    return {"branches": branches, "cars": cars, "customers": customers, "rentals": rentals, "counters": counters}


DESCRIPTION = "Branches, cars, customers and rentals; look up, cancel, upgrade the car class, add insurance."
DOMAIN = Domain("CarRental", 0, DESCRIPTION, (BRANCH, CAR, CUSTOMER, RENTAL), UPDATES, world)
