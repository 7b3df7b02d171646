"""HotelBooking: hotels, rooms, guests and reservations; guests cancel, change room type and pay."""

from __future__ import annotations

from typing import Any

import numpy as np

from toolgym.build.spec import Attr, Domain, Entity, Update

CITIES = ("Lisbon", "Osaka", "Denver", "Nairobi", "Tallinn", "Hobart", "Cusco", "Bergen", "Quebec", "Porto")
HOTEL_WORDS = ("Harbor", "Summit", "Linden", "Aurora", "Cedar", "Marlow", "Juniper", "Beacon", "Willow", "Onyx")
HOTEL_KINDS = ("Inn", "Suites", "Lodge", "Hotel", "Residences")
FIRST = ("Amara", "Bruno", "Chloe", "Dmitri", "Esme", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Keiko", "Lars")
LAST = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Varga", "Quispe", "Haddad", "Novak", "Ferreira", "Brandt")
ROOM_TYPES = ("single", "double", "twin", "suite")
STATUSES = ("confirmed", "cancelled")
LETTERS = "ABCDEFGHJKMNPQRSTUVWXYZ"
# Managers come from their own pools so a manager's name never equals a guest's name.
MANAGER_FIRST = ("Odile", "Rafael", "Signe", "Tomas", "Ulla", "Viktor", "Wanda", "Xavier")
MANAGER_LAST = ("Achterberg", "Bianchi", "Castellanos", "Dubois", "Eriksen", "Fonseca", "Gallagher", "Holm")

HOTEL = Entity(
    name="hotel",
    table="hotels",
    key="hotel_id",
    label="hotel {hotel_id}",
    description="a hotel in the catalogue",
    id_pattern="^HT[0-9]{4}$",
    attrs=(
        Attr("name", "name"),
        Attr("city", "city", answerable=False),
        Attr("phone", "phone number"),
        Attr("manager", "manager"),
        Attr("stars", "star rating", type="integer", answerable=False),
        Attr("checkin_time", "check-in time", answerable=False),
    ),
)
GUEST = Entity(
    name="guest",
    table="guests",
    key="guest_id",
    label="guest {guest_id}",
    description="a registered guest",
    id_pattern="^GU[0-9]{4}$",
    attrs=(
        Attr("name", "name"),
        Attr("email", "email address"),
        Attr("loyalty_number", "loyalty number"),
        Attr("last_reservation", "latest reservation", ref="reservation"),
    ),
)
RESERVATION = Entity(
    name="reservation",
    table="reservations",
    key="reservation_id",
    label="reservation {reservation_id}",
    description="a room reservation",
    id_pattern="^RS[A-Z0-9]{5}$",
    attrs=(
        Attr("hotel_id", "hotel", ref="hotel"),
        Attr("guest_id", "guest", ref="guest"),
        Attr("room_type", "room type", answerable=False, enum=ROOM_TYPES),
        Attr("room_number", "room number"),
        Attr("total_price", "total price", type="integer", answerable=False),  # 3-4 digits recur in other fields
        Attr("status", "status", answerable=False, enum=STATUSES),
        Attr("paid", "payment status", type="boolean", answerable=False),
    ),
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
    # Draw in bulk and convert to lists: numpy scalar indexing costs ~100 ns per access.
    ids = (rng.choice(9000, size=n_h + n_g, replace=False) + 1000).tolist()
    names = rng.permutation(len(HOTEL_WORDS)).tolist()
    cities = rng.permutation(len(CITIES)).tolist()
    hotels = {}
    for i in range(n_h):
        hid = f"HT{ids[i]}"
        hotels[hid] = {
            "hotel_id": hid,
            "name": f"{HOTEL_WORDS[names[i]]} {HOTEL_KINDS[i % len(HOTEL_KINDS)]}",
            "city": CITIES[cities[i]],
            "phone": f"+1-555-{ids[i]:04d}",
            "manager": f"{MANAGER_FIRST[(i * 5) % len(MANAGER_FIRST)]} {MANAGER_LAST[i]}",
            "stars": int(2 + i % 4),
            "checkin_time": f"{14 + i % 3}:00",
        }
    people = rng.permutation(len(FIRST) * len(LAST))[:n_g].tolist()
    loyalty = rng.integers(100000, 999999, size=n_g).tolist()
    guests = {}
    for i in range(n_g):
        gid = f"GU{ids[n_h + i]}"
        first, last = FIRST[people[i] % len(FIRST)], LAST[people[i] // len(FIRST)]
        guests[gid] = {
            "guest_id": gid,
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}{i}@mail.example",
            "loyalty_number": f"LY{loyalty[i]}",
            "last_reservation": "",
        }
    hotel_ids, guest_ids = list(hotels), list(guests)
    draws = rng.integers(0, 1 << 30, size=(n_r, 6)).tolist()
    reservations = {}
    for i in range(n_r):
        d = draws[i]
        rid = "RS" + "".join(LETTERS[(d[0] >> (5 * k)) % len(LETTERS)] for k in range(3)) + f"{i:02d}"
        gid = guest_ids[i % n_g]
        reservations[rid] = {
            "reservation_id": rid,
            "hotel_id": hotel_ids[d[1] % n_h],
            "guest_id": gid,
            "room_type": ROOM_TYPES[d[2] % len(ROOM_TYPES)],
            "room_number": f"{1 + d[3] % 9}{d[4] % 40:02d}-{i}",
            "total_price": 180 + d[5] % 2400,
            "status": "confirmed" if i % 5 else "cancelled",
            "paid": bool(i % 2),
        }
        guests[gid]["last_reservation"] = rid
    return {
        "hotels": hotels,
        "guests": guests,
        "reservations": reservations,
        "counters": dict(
            zip([u.name for u in UPDATES], (rng.integers(0, 8000, size=len(UPDATES)) + 1000).tolist(), strict=True)
        ),
    }


DOMAIN = Domain(
    name="HotelBooking",
    version=0,
    description="Hotels, guests and reservations; look up, cancel, change room type, pay.",
    entities=(HOTEL, GUEST, RESERVATION),
    updates=UPDATES,
    world=world,
)
