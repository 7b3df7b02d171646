"""HotelBooking: hotels, rooms, guests and reservations; guests cancel, change room type and pay."""

from __future__ import annotations

from typing import Any

import numpy as np

from toolgym.construct import kit
from toolgym.construct.spec import Attr, Domain, Update

CITIES = ("Lisbon", "Osaka", "Denver", "Nairobi", "Tallinn", "Hobart", "Cusco", "Bergen", "Quebec", "Porto")
HOTEL_WORDS = ("Harbor", "Summit", "Linden", "Aurora", "Cedar", "Marlow", "Juniper", "Beacon", "Willow", "Onyx")
HOTEL_KINDS = ("Inn", "Suites", "Lodge", "Hotel", "Residences")
ROOM_TYPES = ("single", "double", "twin", "suite")
STATUSES = ("confirmed", "cancelled")
LETTERS = "ABCDEFGHJKMNPQRSTUVWXYZ"
# Managers come from their own pools so a manager's name never equals a guest's name.
MANAGER_FIRST = ("Odile", "Rafael", "Signe", "Tomas", "Ulla", "Viktor", "Wanda", "Xavier")
MANAGER_LAST = ("Achterberg", "Bianchi", "Castellanos", "Dubois", "Eriksen", "Fonseca", "Gallagher", "Holm")

HOTEL = kit.entity(
    "hotel",
    "a hotel in the catalogue",
    "^HT[0-9]{4}$",
    Attr("name", "name"),
    Attr("city", "city", answerable=False),
    Attr("phone", "phone number"),
    Attr("manager", "manager"),
    Attr("stars", "star rating", type="integer", answerable=False),
    Attr("checkin_time", "check-in time", answerable=False),
)
GUEST = kit.entity(
    "guest",
    "a registered guest",
    "^GU[0-9]{4}$",
    Attr("name", "name"),
    Attr("email", "email address"),
    Attr("loyalty_number", "loyalty number"),
    Attr("last_reservation", "latest reservation", ref="reservation"),
)
RESERVATION = kit.entity(
    "reservation",
    "a room reservation",
    "^RS[A-Z0-9]{5}$",
    Attr("hotel_id", "hotel", ref="hotel"),
    Attr("guest_id", "guest", ref="guest"),
    Attr("room_type", "room type", answerable=False, enum=ROOM_TYPES),
    Attr("room_number", "room number"),
    Attr("total_price", "total price", type="integer", answerable=False),  # 3-4 digits recur in other fields
    Attr("status", "status", answerable=False, enum=STATUSES),
    Attr("paid", "payment status", type="boolean", answerable=False),
)
UPDATES = (
    Update(
        name="cancel_reservation",
        entity="reservation",
        description="Cancel a confirmed reservation.",
        request="cancel {target}",
        confirmation_prefix="CX",
        sets={"status": "cancelled"},
        require={"status": "confirmed"},
    ),
    Update(
        name="change_room_type",
        entity="reservation",
        description="Change the room type of a confirmed reservation.",
        request="change the room type of {target} to {value}",
        confirmation_prefix="RC",
        require={"status": "confirmed"},
        param=Attr("room_type", "room type", answerable=False, enum=ROOM_TYPES),
    ),
    Update(
        name="pay_reservation",
        entity="reservation",
        description="Pay the outstanding amount of a confirmed, unpaid reservation.",
        request="pay for {target}",
        confirmation_prefix="PM",
        sets={"paid": True},
        require={"status": "confirmed", "paid": False},
    ),
)


def world(rng: np.random.Generator) -> dict[str, Any]:
    """8 hotels, 10 guests, 12 reservations; every guest's latest reservation is one of theirs."""
    n_h, n_g, n_r = 8, 10, 12
    u = kit.words(rng, n_h + n_g + n_r + 1)
    g = u[-1]
    name0, name_step = g % 10, kit.STRIDES_10[(g >> 4) % 4]
    city0, city_step = (g >> 6) % 10, kit.STRIDES_10[(g >> 10) % 4]
    hotels = {}
    hotel_ids = []
    for i in range(n_h):
        hid = kit.bucket_id("HT", i, u[i], width=450)
        hotel_ids.append(hid)
        hotels[hid] = {
            "hotel_id": hid,
            "name": HOTEL_WORDS[(name0 + i * name_step) % 10] + " " + HOTEL_KINDS[i % len(HOTEL_KINDS)],
            "city": CITIES[(city0 + i * city_step) % 10],
            "phone": "+1-555-" + hid[2:],
            "manager": MANAGER_FIRST[(i * 5) % len(MANAGER_FIRST)] + " " + MANAGER_LAST[i],
            "stars": 2 + i % 4,
            "checkin_time": str(14 + i % 3) + ":00",
        }
    guests = {}
    for i, d, gid, name, email in kit.people("GU", u[n_h : n_h + n_g], g >> 12, width=450, base=5000):
        guests[gid] = {
            "guest_id": gid,
            "name": name,
            "email": email + str(i) + "@mail.example",
            "loyalty_number": "LY" + str(100000 + (d >> 12) % 900000),
            "last_reservation": "",
        }
    guest_ids = list(guests)
    # reservation i stays at hotel (hotel0 + i * stride) mod 8 with an odd stride: the first 8 reservations
    # visit every hotel once, so 4 hotels have exactly one reservation (a hotel then names its reservation)
    hotel0, hotel_step = (g >> 22) % n_h, (1, 3, 5, 7)[(g >> 25) % 4]
    reservations = {}
    for i in range(n_r):
        d = u[n_h + n_g + i]
        rid = "RS" + kit.letters(d, 0, 3, LETTERS) + str(10 + i)
        gid = guest_ids[i % n_g]
        reservations[rid] = {
            "reservation_id": rid,
            "hotel_id": hotel_ids[(hotel0 + i * hotel_step) % n_h],
            "guest_id": gid,
            "room_type": ROOM_TYPES[(d >> 20) % len(ROOM_TYPES)],
            # the index is two digits: '477-1' would occur inside '477-11', and tool outputs are matched by substring
            "room_number": f"{1 + (d >> 23) % 9}{10 + (d >> 27) % 90}-{i:02d}",
            "total_price": 180 + (d >> 34) % 2400,
            "status": "confirmed" if i % 5 else "cancelled",
            "paid": bool(i % 2),
        }
        guests[gid]["last_reservation"] = rid
    counters = kit.word_counters(UPDATES, g, shift=30, step=10, span=8000)
    return {"hotels": hotels, "guests": guests, "reservations": reservations, "counters": counters}


DESCRIPTION = "Hotels, guests and reservations; look up, cancel, change room type, pay."
DOMAIN = Domain("HotelBooking", 1, DESCRIPTION, (HOTEL, GUEST, RESERVATION), UPDATES, world)
