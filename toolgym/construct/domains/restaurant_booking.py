"""RestaurantBooking: restaurants with their dishes, diners and the diners' table reservations.

Diners cancel booked reservations, change the party size and pay the deposit. Chains: diner -> latest
reservation -> restaurant -> signature dish, reservation -> diner, dish -> restaurant. Head chefs and diners
are drawn from disjoint name pools, so a chef's name never occurs in a diner record and vice versa.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolgym.construct import kit
from toolgym.construct.spec import Attr, Domain, Update

RESTAURANT_WORDS = ("Olive", "Copper", "Lotus", "Ember", "Sable", "Thistle", "Marigold", "Basalt")
RESTAURANT_KINDS = ("Bistro", "Kitchen", "Table", "Trattoria", "Brasserie", "Canteen")
CUISINES = ("italian", "japanese", "french", "mexican", "indian", "nordic")
CITIES = ("Lyon", "Bordeaux", "Nantes", "Lille", "Nice", "Rennes")
DISHES = (
    "Saffron Risotto",
    "Miso Glazed Cod",
    "Duck Confit",
    "Mole Poblano",
    "Lamb Rogan Josh",
    "Cured Salmon Plate",
    "Truffle Tagliatelle",
    "Charred Octopus",
    "Beetroot Tartare",
    "Pistachio Parfait",
    "Yuzu Cheesecake",
    "Smoked Aubergine",
)
DISH_CUISINE = (0, 1, 2, 3, 4, 5, 0, 3, 5, 2, 1, 4)  # CUISINES index; a restaurant has its signature dish's cuisine
COURSES = ("starter", "main", "dessert")
DISH_COURSE = (1, 1, 1, 1, 1, 0, 1, 0, 0, 2, 2, 0)
DIETS = ("none", "vegetarian", "vegan", "gluten-free")
PARTY_SIZES = ("1", "2", "3", "4", "5", "6", "7", "8")
TIMES = ("18:00", "18:30", "19:00", "19:30", "20:00", "20:30", "21:00")
RES_STATUSES = ("booked", "cancelled", "completed")
# Status of reservation i is STATUS_CYCLE[(i + offset) % 10]: 6 booked, 2 cancelled, 2 completed.
STATUS_CYCLE = (0, 0, 1, 0, 2, 0, 0, 1, 0, 2)

RESTAURANT = kit.entity(
    "restaurant",
    "a restaurant taking table reservations",
    "^RE[0-9]{4}$",
    Attr("name", "name"),
    Attr("cuisine", "cuisine", answerable=False, enum=CUISINES),
    Attr("city", "city", answerable=False),
    Attr("phone", "phone number"),
    Attr("head_chef", "head chef"),
    Attr("signature_dish", "signature dish", ref="dish"),
)
DISH = kit.entity(
    "dish",
    "a dish on a restaurant's menu",
    "^DS[0-9]{4}$",
    Attr("name", "name"),
    Attr("restaurant_id", "restaurant", ref="restaurant"),
    Attr("course", "course", answerable=False, enum=COURSES),
    Attr("price_cents", "price in cents", type="integer", answerable=False),
    Attr("vegetarian", "vegetarian flag", type="boolean", answerable=False),
    table="dishes",
)
DINER = kit.entity(
    "diner",
    "a diner with an account on the booking service",
    "^DN[0-9]{4}$",
    Attr("name", "full name"),
    Attr("email", "email address"),
    Attr("phone", "phone number"),
    Attr("dietary_preference", "dietary preference", answerable=False, enum=DIETS),
    Attr("last_reservation", "latest reservation", ref="reservation"),
)
RESERVATION = kit.entity(
    "reservation",
    "a table reservation",
    "^RV[0-9]{4}$",
    Attr("restaurant_id", "restaurant", ref="restaurant"),
    Attr("diner_id", "diner", ref="diner"),
    Attr("booking_code", "booking code"),
    Attr("starts_at", "date and time", answerable=False),
    Attr("party_size", "party size", answerable=False, enum=PARTY_SIZES),
    Attr("status", "status", answerable=False, enum=RES_STATUSES),
    Attr("deposit_paid", "deposit status", type="boolean", answerable=False),
)
UPDATES = (
    Update(
        name="cancel_reservation",
        entity="reservation",
        description="Cancel a booked table reservation.",
        request="cancel {target}",
        confirmation_prefix="CR",
        sets={"status": "cancelled"},
        require={"status": "booked"},
    ),
    Update(
        name="change_party_size",
        entity="reservation",
        description="Change the number of guests of a booked table reservation.",
        request="change the party size of {target} to {value}",
        confirmation_prefix="PZ",
        require={"status": "booked"},
        param=Attr("party_size", "party size", answerable=False, enum=PARTY_SIZES),
    ),
    Update(
        name="confirm_deposit",
        entity="reservation",
        description="Pay the deposit of a booked reservation whose deposit is still open.",
        request="pay the deposit for {target}",
        confirmation_prefix="DE",
        sets={"deposit_paid": True},
        require={"status": "booked", "deposit_paid": False},
    ),
)


def world(rng: np.random.Generator) -> dict[str, Any]:
    """6 restaurants, 10 dishes (each restaurant has one or two), 8 diners, 10 reservations."""
    n_r, n_s, n_d, n_v = 6, 10, 8, 10
    r = kit.words(rng, 2 + n_r + n_s + n_d + n_v)
    g, c = r[0], r[1]
    word0, kind0, city0, chef0 = (g >> 10) % 8, (g >> 13) % 6, (g >> 16) % 6, (g >> 19) % 8
    dish0, dish_off, res_off, status_off = (g >> 22) % 12, (g >> 26) % n_r, (g >> 29) % n_r, (g >> 32) % 10
    diner_off, deposit_off, day0 = (g >> 36) % n_d, (g >> 39) % 2, (g >> 40) % 8

    rest_ids = [kit.bucket_id("RE", i, r[2 + i]) for i in range(n_r)]
    dishes = {}
    signature = [""] * n_r
    cuisine = [0] * n_r
    for i in range(n_s):
        d = r[2 + n_r + i]
        did = kit.bucket_id("DS", i, d)
        k = (dish0 + i) % 12
        owner = (dish_off + i) % n_r
        if not signature[owner]:
            signature[owner], cuisine[owner] = did, DISH_CUISINE[k]
        dishes[did] = {
            "dish_id": did,
            "name": DISHES[k],
            "restaurant_id": rest_ids[owner],
            "course": COURSES[DISH_COURSE[k]],
            "price_cents": 900 + 50 * ((d >> 10) % 50),
            "vegetarian": k in (0, 6, 8, 9, 10, 11),
        }

    restaurants = {}
    for i in range(n_r):
        d = r[2 + i]
        rid = rest_ids[i]
        restaurants[rid] = {
            "restaurant_id": rid,
            "name": f"{RESTAURANT_WORDS[(word0 + i) % 8]} {RESTAURANT_KINDS[(kind0 + i) % 6]}",
            "cuisine": CUISINES[cuisine[i]],
            "city": CITIES[(city0 + i + (d >> 10) % 2) % 6],
            "phone": kit.phone("+33-4", i, d >> 12),
            "head_chef": f"{kit.STAFF_FIRST[(chef0 + i) % 8]} {kit.STAFF_LAST[(chef0 + 3 * i) % 8]}",
            "signature_dish": signature[i],
        }

    diners = {}
    for i, d, nid, name, email in kit.people("DN", r[2 + n_r + n_s : 2 + n_r + n_s + n_d], g):
        diners[nid] = {
            "diner_id": nid,
            "name": name,
            "email": f"{email}@dinemail.example",
            "phone": kit.phone("+33-6", i, d >> 10),
            "dietary_preference": DIETS[(d >> 27) % 4],
            "last_reservation": "",
        }
    diner_ids = list(diners)

    reservations = {}
    for i in range(n_v):
        d = r[2 + n_r + n_s + n_d + i]
        vid = kit.bucket_id("RV", i, d)
        nid = diner_ids[(diner_off + i) % n_d]
        reservations[vid] = {
            "reservation_id": vid,
            "restaurant_id": rest_ids[(res_off + 5 * i) % n_r],
            "diner_id": nid,
            "booking_code": f"BK-{kit.letters(d, 10, 4)}{i:02d}",
            "starts_at": f"2025-07-{1 + day0 + 2 * i:02d} {TIMES[(d >> 30) % 7]}",
            "party_size": PARTY_SIZES[1 + (d >> 33) % 5],
            "status": RES_STATUSES[STATUS_CYCLE[(status_off + i) % 10]],
            "deposit_paid": (i + deposit_off) % 2 == 0,
        }
        diners[nid]["last_reservation"] = vid
    counters = kit.word_counters(UPDATES, c)
    tables = {"restaurants": restaurants, "dishes": dishes, "diners": diners, "reservations": reservations}
    return {**tables, "counters": counters}


DESCRIPTION = "Restaurants, dishes, diners and reservations; look up, cancel, change party size, pay deposit."
DOMAIN = Domain("RestaurantBooking", 0, DESCRIPTION, (RESTAURANT, DISH, DINER, RESERVATION), UPDATES, world)
