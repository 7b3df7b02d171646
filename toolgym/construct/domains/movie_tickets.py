"""MovieTickets: cinemas, movies, screenings of movies at cinemas, customers and their tickets.

Every screening shows one movie at one cinema; every ticket is for one screening and belongs to one customer,
and each customer's latest ticket is one of their own. Customers cancel tickets, change seat rows and redeem
vouchers. Chains run customer -> latest ticket -> screening -> movie / cinema.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolgym.construct import kit
from toolgym.construct.spec import Attr, Domain, Update

# (cinema name, city)
CINEMAS = (
    ("Roxy Picturehouse", "Leeds"),
    ("Lumiere Screens", "Lyon"),
    ("Odeon Riverside", "Glasgow"),
    ("Kino Babylon Mitte", "Berlin"),
    ("The Electric Palace", "Bristol"),
    ("Cine Doree", "Bordeaux"),
    ("Starlight Multiplex", "Dublin"),
    ("Paragon Cinema Club", "Manchester"),
)
CITIES = tuple(sorted({c[1] for c in CINEMAS}))
# (title, director, runtime in minutes, rating, release year): titles and directors share no words.
MOVIES = (
    ("Midnight at Port Verity", "Selma Okonjo", 118, "PG-13", 2023),
    ("The Glass Cartographer", "Henrik Aasland", 134, "PG", 2022),
    ("Static Bloom", "Yuki Hanazawa", 97, "R", 2024),
    ("Ferris Wheel Requiem", "Carlos Beltran Ruiz", 126, "PG-13", 2021),
    ("Orbit of Small Things", "Maren Kjellberg", 142, "PG", 2024),
    ("Saltwater Kings", "Tobias Wendt", 109, "R", 2023),
    ("Paper Lanterns Rising", "Aiko Fujimura", 101, "G", 2022),
    ("The Last Tram to Zorin", "Dragan Petrovic", 131, "PG-13", 2024),
    ("Quartz Desert", "Noor El-Amin", 115, "PG-13", 2023),
    ("A Thousand Quiet Hours", "Rosalind Achebe", 152, "R", 2021),
)
RATINGS = ("G", "PG", "PG-13", "R")
FORMATS = ("2D", "3D", "IMAX")
TIMES = ("12:30", "14:15", "16:40", "18:00", "19:30", "20:45", "22:10")
ROWS = ("A", "B", "C", "D", "E", "F", "G", "H")
TICKET_STATUSES = ("valid", "cancelled", "used")

CINEMA = kit.entity(
    "cinema",
    "a cinema",
    "^CN[0-9]{5}$",
    Attr("name", "name"),
    Attr("city", "city", answerable=False, enum=CITIES),
    Attr("phone", "box office phone number"),
    Attr("screens", "number of screens", type="integer", answerable=False),
)
MOVIE = kit.entity(
    "movie",
    "a movie in the programme",
    "^MV[0-9]{5}$",
    Attr("title", "title"),
    Attr("director", "director"),
    Attr("runtime_min", "runtime in minutes", type="integer", answerable=False),
    Attr("rating", "age rating", answerable=False, enum=RATINGS),
    Attr("release_year", "release year", type="integer", answerable=False),
)
SCREENING = kit.entity(
    "screening",
    "a showing of a movie at a cinema",
    "^SC[0-9]{5}$",
    Attr("movie_id", "movie", ref="movie"),
    Attr("cinema_id", "cinema", ref="cinema"),
    Attr("date", "date", answerable=False),
    Attr("start_time", "start time", answerable=False, enum=TIMES),
    Attr("format", "format", answerable=False, enum=FORMATS),
    Attr("auditorium", "auditorium"),
)
CUSTOMER = kit.entity(
    "customer",
    "a registered customer",
    "^CU[0-9]{5}$",
    Attr("name", "name"),
    Attr("email", "email address"),
    Attr("member_number", "membership number"),
    Attr("last_ticket", "latest ticket", ref="ticket"),
)
TICKET = kit.entity(
    "ticket",
    "a ticket for a screening",
    "^TK[0-9]{5}$",
    Attr("screening_id", "screening", ref="screening"),
    Attr("customer_id", "customer", ref="customer"),
    Attr("seat_row", "seat row", answerable=False, enum=ROWS),
    Attr("seat_number", "seat number", type="integer", answerable=False),
    Attr("status", "status", answerable=False, enum=TICKET_STATUSES),
    Attr("voucher_code", "voucher code"),
    Attr("voucher_redeemed", "voucher status", type="boolean", answerable=False),
)
UPDATES = (
    Update(
        name="cancel_ticket",
        entity="ticket",
        description="Cancel a valid ticket.",
        request="cancel {target}",
        confirmation_prefix="KX",
        sets={"status": "cancelled"},
        require={"status": "valid"},
    ),
    Update(
        name="change_seat_row",
        entity="ticket",
        description="Move a valid ticket to another seat row in the same auditorium.",
        request="move {target} to row {value}",
        confirmation_prefix="SR",
        require={"status": "valid"},
        param=Attr("seat_row", "seat row", answerable=False, enum=ROWS),
    ),
    Update(
        name="redeem_voucher",
        entity="ticket",
        description="Redeem the snack voucher of a valid ticket whose voucher has not been redeemed yet.",
        request="redeem the voucher of {target}",
        confirmation_prefix="VR",
        sets={"voucher_redeemed": True},
        require={"status": "valid", "voucher_redeemed": False},
    ),
)

N_CINEMA, N_MOVIE, N_SCREENING, N_CUSTOMER, N_TICKET = 6, 6, 8, 7, 10
_N_CINEMAS, _N_MOVIES, _N_FIRST = len(CINEMAS), len(MOVIES), len(kit.FIRST)
_N_DRAWS = _N_CINEMAS + _N_MOVIES + _N_FIRST + 16 + 4 * N_SCREENING + N_CUSTOMER + 3 * N_TICKET
# Precomputed strings: f-strings with format specs cost ~1 us each here, a table lookup ~0.1 us.
NAMES = kit.full_names(kit.FIRST, kit.LAST)
EMAILS = kit.email_names(kit.FIRST, kit.LAST)


def world(rng: np.random.Generator) -> dict[str, Any]:
    """6 cinemas, 6 movies, 8 screenings, 7 customers, 10 tickets.

    Screenings cycle over movies and cinemas, tickets over screenings and customers, from random offsets, and
    each customer's latest ticket is the last one sold to them, so every ref column holds unique and repeated
    values.
    """
    u = kit.Uniforms(rng, _N_DRAWS)
    cinemas = u.order(_N_CINEMAS)
    movies = u.order(_N_MOVIES)
    firsts = u.order(_N_FIRST)
    g = u.take(16)
    cinema_ids = kit.strided_ids("CN", N_CINEMA, g[0], g[1])
    movie_ids = kit.strided_ids("MV", N_MOVIE, g[0], g[1], offset=33013)
    screening_ids = kit.strided_ids("SC", N_SCREENING, g[2], g[3])
    customer_ids = kit.strided_ids("CU", N_CUSTOMER, g[2], g[3], offset=52027)
    ticket_ids = kit.strided_ids("TK", N_TICKET, g[4], g[5])

    cinema_table, movie_table, screenings, customers, tickets = {}, {}, {}, {}, {}
    b = int(g[6] * 9000)
    for i in range(N_CINEMA):
        cid = cinema_ids[i]
        name, city = CINEMAS[cinemas[i]]
        cinema_table[cid] = {
            "cinema_id": cid,
            "name": name,
            "city": city,
            "phone": "+44 161 " + str(200 + (b + i * 137) % 800) + " " + str(1000 + (b * 7 + i * 2713) % 9000),
            "screens": 3 + (b + i) % 9,
        }
    for i in range(N_MOVIE):
        mid = movie_ids[i]
        title, director, runtime, rating, year = MOVIES[movies[i]]
        movie_table[mid] = {
            "movie_id": mid,
            "title": title,
            "director": director,
            "runtime_min": runtime,
            "rating": rating,
            "release_year": year,
        }
    d = u.take(4 * N_SCREENING)
    off_m, off_c = int(g[7] * N_MOVIE), int(g[8] * N_CINEMA)
    for i in range(N_SCREENING):
        sid, x, y, z, w = screening_ids[i], d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]
        screenings[sid] = {
            "screening_id": sid,
            "movie_id": movie_ids[(off_m + i) % N_MOVIE],
            "cinema_id": cinema_ids[(off_c + 5 * i) % N_CINEMA],
            "date": kit.DATES[int(x * 336)],
            "start_time": TIMES[int(y * 7)],
            "format": FORMATS[int(z * 3)],
            "auditorium": "Auditorium " + kit.PAIRS[int(w * 400)] + str(i),
        }
    d = u.take(N_CUSTOMER)
    b = int(g[9] * 900000)
    for i in range(N_CUSTOMER):
        cid = customer_ids[i]
        person = firsts[i] * 10 + int(d[i] * 10)
        customers[cid] = {
            "customer_id": cid,
            "name": NAMES[person],
            "email": EMAILS[person] + str(i) + "@mail.example",
            "member_number": "CC-" + str(100000 + (b + i * 45673) % 900000),
            "last_ticket": "",
        }
    d = u.take(3 * N_TICKET)
    off_s, off_u = int(g[10] * N_SCREENING), int(g[11] * N_CUSTOMER)
    for i in range(N_TICKET):
        tid, x, y, z = ticket_ids[i], d[3 * i], d[3 * i + 1], d[3 * i + 2]
        cid = customer_ids[(off_u + i) % N_CUSTOMER]
        tickets[tid] = {
            "ticket_id": tid,
            "screening_id": screening_ids[(off_s + 3 * i) % N_SCREENING],
            "customer_id": cid,
            "seat_row": ROWS[int(x * 8)],
            "seat_number": 1 + int(y * 24),
            "status": TICKET_STATUSES[0 if i % 4 else 1 + int(z * 2)],
            "voucher_code": "VC-" + kit.PAIRS[int(z * 400)] + str(i) + str(10 + int(x * 90)),
            "voucher_redeemed": i % 4 == 2,
        }
        customers[cid]["last_ticket"] = tid
    counters = kit.uniform_counters(UPDATES, g[12:15])
    tables = {"cinemas": cinema_table, "movies": movie_table, "screenings": screenings}
    return {**tables, "customers": customers, "tickets": tickets, "counters": counters}


DESCRIPTION = "Cinemas, movies, screenings, customers and tickets; look up, cancel, change seat row, redeem."
DOMAIN = Domain("MovieTickets", 0, DESCRIPTION, (CINEMA, MOVIE, SCREENING, CUSTOMER, TICKET), UPDATES, world)
