"""Library: a lending library's members, books, authors and loans; members renew, return and pay fines.

Every book has an author; every loan lends one book to one member, and each member's latest loan is one of
their own. Chains run member -> latest loan -> book -> author.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolgym.construct import kit
from toolgym.construct.spec import Attr, Domain, Update

# (title, genre): titles share no words with author names, so one never occurs inside another record.
BOOKS = (
    ("The Salt Orchard", "literary fiction"),
    ("Glass Harbour", "mystery"),
    ("A Map of Small Rivers", "literary fiction"),
    ("The Quiet Meridian", "science fiction"),
    ("Lanterns over Kyoto", "history"),
    ("The Copper Archive", "mystery"),
    ("Winter at Vasaholm", "literary fiction"),
    ("Seven Bright Engines", "science fiction"),
    ("The Cartographer's Daughter", "history"),
    ("Ashes of the Long Summer", "fantasy"),
    ("The Ninth Lighthouse", "mystery"),
    ("Songs for an Empty Station", "poetry"),
    ("The Iron Pavilion", "fantasy"),
    ("Notes from the Tidal Flats", "nature"),
)
GENRES = ("literary fiction", "mystery", "science fiction", "history", "fantasy", "poetry", "nature")
# (author, nationality, birth year)
AUTHORS = (
    ("Ngozi Adeyemi", "Nigerian", 1971),
    ("Tomasz Wierzbicki", "Polish", 1958),
    ("Ines Carvalho", "Portuguese", 1983),
    ("Haruki Morisawa", "Japanese", 1966),
    ("Solveig Strand", "Norwegian", 1979),
    ("Mateo Villanueva", "Argentine", 1962),
    ("Priya Raghunathan", "Indian", 1988),
    ("Callum Fairweather", "Scottish", 1954),
    ("Leila Mansouri", "Iranian", 1975),
    ("Anouk de Vries", "Dutch", 1969),
)
NATIONALITIES = tuple(sorted({a[1] for a in AUTHORS}))
# Members' names: the kit's pools, but Yusuf for Ines (an author's first name).
FIRST = ("Amara", "Bruno", "Chloe", "Dmitri", "Esme", "Farid", "Greta", "Hugo", "Jonas", "Keiko", "Lars", "Yusuf")
LAST = kit.LAST
MEMBERSHIPS = ("standard", "student", "senior")
LOAN_STATUSES = ("active", "overdue", "returned")
RENEWAL_PERIODS = ("one week", "two weeks", "three weeks")

MEMBER = kit.entity(
    "member",
    "a registered library member",
    "^MB[0-9]{5}$",
    Attr("name", "name"),
    Attr("email", "email address"),
    Attr("card_number", "library card number"),
    Attr("membership", "membership type", answerable=False, enum=MEMBERSHIPS),
    Attr("has_unpaid_fine", "unpaid fine status", type="boolean", answerable=False),
    Attr("last_loan", "latest loan", ref="loan"),
)
BOOK = kit.entity(
    "book",
    "a book in the catalogue",
    "^BK[0-9]{5}$",
    Attr("title", "title"),
    Attr("isbn", "ISBN"),
    Attr("author_id", "author", ref="author"),
    Attr("genre", "genre", answerable=False, enum=GENRES),
    Attr("pages", "page count", type="integer", answerable=False),
    Attr("available", "availability", type="boolean", answerable=False),
)
AUTHOR = kit.entity(
    "author",
    "an author of books in the catalogue",
    "^AU[0-9]{5}$",
    Attr("name", "name"),
    Attr("nationality", "nationality", answerable=False, enum=NATIONALITIES),
    Attr("birth_year", "birth year", type="integer", answerable=False),
    Attr("website", "website"),
)
LOAN = kit.entity(
    "loan",
    "a book lent to a member",
    "^LN[0-9]{5}$",
    Attr("book_id", "book", ref="book"),
    Attr("member_id", "member", ref="member"),
    Attr("due_date", "due date", answerable=False),
    Attr("status", "status", answerable=False, enum=LOAN_STATUSES),
    Attr("renewal_period", "renewal period", answerable=False, enum=RENEWAL_PERIODS),
    Attr("receipt_code", "receipt code"),
)
UPDATES = (
    Update(
        name="renew_loan",
        entity="loan",
        description="Renew an active loan for the given period.",
        request="renew {target} for {value}",
        confirmation_prefix="RW",
        require={"status": "active"},
        param=Attr("renewal_period", "renewal period", answerable=False, enum=RENEWAL_PERIODS),
    ),
    Update(
        name="return_book",
        entity="loan",
        description="Return the book of an active loan.",
        request="return the book of {target}",
        confirmation_prefix="RT",
        sets={"status": "returned"},
        require={"status": "active"},
    ),
    Update(
        name="pay_fine",
        entity="member",
        description="Pay the outstanding fine of a member who has one.",
        request="pay the fine of {target}",
        confirmation_prefix="FP",
        sets={"has_unpaid_fine": False},
        require={"has_unpaid_fine": True},
    ),
)

N_MEMBER, N_BOOK, N_AUTHOR, N_LOAN = 8, 9, 6, 11
_N_BOOKS, _N_AUTHORS, _N_FIRST = len(BOOKS), len(AUTHORS), len(FIRST)
_N_DRAWS = _N_BOOKS + _N_AUTHORS + _N_FIRST + 16 + 2 * N_MEMBER + 3 * N_BOOK + 3 * N_LOAN
# Precomputed strings: f-strings with format specs cost ~1 us each here, a table lookup ~0.1 us.
SITES = tuple("www." + a[0].lower().replace(" ", "") + ".example" for a in AUTHORS)
EMAILS = kit.email_names(FIRST, LAST)
NAMES = kit.full_names(FIRST, LAST)


def world(rng: np.random.Generator) -> dict[str, Any]:
    """8 members, 9 books by 6 authors, 11 loans.

    Authors 0-2 write two books each, the others one; loans cycle over members and books from random offsets,
    and each member's latest loan is the last one lent to them, so ref columns hold unique and repeated values.
    """
    u = kit.Uniforms(rng, _N_DRAWS)
    books = u.order(_N_BOOKS)
    authors = u.order(_N_AUTHORS)
    firsts = u.order(_N_FIRST)
    g = u.take(16)
    member_ids = kit.strided_ids("MB", N_MEMBER, g[0], g[1])
    book_ids = kit.strided_ids("BK", N_BOOK, g[2], g[3])
    author_ids = kit.strided_ids("AU", N_AUTHOR, g[2], g[3], offset=27011)
    loan_ids = kit.strided_ids("LN", N_LOAN, g[4], g[5])

    members, book_table, author_table, loans = {}, {}, {}, {}
    d = u.take(2 * N_MEMBER)
    card0 = int(g[6] * 90000)
    for i in range(N_MEMBER):
        mid, x, y = member_ids[i], d[2 * i], d[2 * i + 1]
        person = firsts[i] * 10 + int(x * 10)
        members[mid] = {
            "member_id": mid,
            "name": NAMES[person],
            "email": EMAILS[person] + str(i) + "@mail.example",
            "card_number": "LC-" + str(100000 + (card0 + i * 12347) % 900000),
            "membership": MEMBERSHIPS[int(y * 3)],
            "has_unpaid_fine": i % 3 == 1,
            "last_loan": "",
        }
    for i in range(N_AUTHOR):
        aid, a = author_ids[i], authors[i]
        name, nationality, year = AUTHORS[a]
        author_table[aid] = {
            "author_id": aid,
            "name": name,
            "nationality": nationality,
            "birth_year": year,
            "website": SITES[a],
        }
    d = u.take(3 * N_BOOK)
    isbn0 = int(g[7] * 90000)
    for i in range(N_BOOK):
        bid, x, y, z = book_ids[i], d[3 * i], d[3 * i + 1], d[3 * i + 2]
        title, genre = BOOKS[books[i]]
        book_table[bid] = {
            "book_id": bid,
            "title": title,
            "isbn": "978-" + str(1 + int(x * 9)) + "-" + str(10000 + (isbn0 + i * 30011) % 90000) + "-" + str(i),
            "author_id": author_ids[i % N_AUTHOR],
            "genre": genre,
            "pages": 120 + int(y * 500),
            "available": z < 0.5,
        }
    d = u.take(3 * N_LOAN)
    off_m, off_b = int(g[8] * N_MEMBER), int(g[9] * N_BOOK)
    for i in range(N_LOAN):
        lid, x, y, z = loan_ids[i], d[3 * i], d[3 * i + 1], d[3 * i + 2]
        mid = member_ids[(off_m + i) % N_MEMBER]
        loans[lid] = {
            "loan_id": lid,
            "book_id": book_ids[(off_b + 2 * i) % N_BOOK],
            "member_id": mid,
            "due_date": kit.DATES[int(x * 336)],
            "status": LOAN_STATUSES[i % 3],
            "renewal_period": RENEWAL_PERIODS[int(y * 3)],
            "receipt_code": "RC-" + kit.PAIRS[int(z * 400)] + str(i),
        }
        members[mid]["last_loan"] = lid
    counters = kit.uniform_counters(UPDATES, g[10:13])
    return {"members": members, "books": book_table, "authors": author_table, "loans": loans, "counters": counters}


DESCRIPTION = "Library members, books, authors and loans; look up, renew, return, pay fines."
DOMAIN = Domain("Library", 0, DESCRIPTION, (MEMBER, BOOK, AUTHOR, LOAN), UPDATES, world)
