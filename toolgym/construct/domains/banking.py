"""Banking: customers, their accounts, the cards issued on those accounts and the accounts' transactions.

Customers freeze cards, change the daily transfer limit of an open account and dispute posted transactions.
Chains: transaction -> account -> customer, card -> account -> customer, customer -> primary account.
Answerable integers (balances, amounts in cents) are 5-digit and drawn from disjoint ranges, while every
other digit run in the world (ids, phones, IBAN groups) is at most 4 digits long, so no value hides inside
another record.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolgym.construct import kit
from toolgym.construct.spec import Attr, Domain, Update

CITIES = ("Leeds", "Utrecht", "Graz", "Turku", "Ghent", "Bilbao")
SEGMENTS = ("retail", "premier", "business")
ACCOUNT_TYPES = ("checking", "savings", "business")
ACCOUNT_STATUSES = ("open", "frozen")
LIMITS = ("500", "1000", "2500", "5000", "10000")
NICKNAMES = (
    "Rainy Day Fund",
    "Household Bills",
    "Travel Pot",
    "Tuition Savings",
    "Wedding Fund",
    "Car Repairs",
    "Holiday Kitty",
    "Emergency Reserve",
    "Garden Project",
    "Pension Top-up",
    "Gift Jar",
)
NETWORKS = ("visa", "mastercard")
CARD_STATUSES = ("active", "frozen")
MERCHANTS = (
    "Bluebird Grocers",
    "Northwind Fuel",
    "Cobalt Pharmacy",
    "Pebble Bookshop",
    "Saffron Kitchen",
    "Meridian Rail",
    "Quartz Electronics",
    "Tidewater Hardware",
    "Lantern Cinema",
    "Orchard Market",
    "Velvet Tailors",
    "Granite Gym",
)
TX_STATUSES = ("posted", "pending", "disputed")

CUSTOMER = kit.entity(
    "customer",
    "a bank customer",
    "^CU[0-9]{4}$",
    Attr("name", "full name"),
    Attr("email", "email address"),
    Attr("phone", "phone number"),
    Attr("city", "home city", answerable=False),
    Attr("segment", "customer segment", answerable=False, enum=SEGMENTS),
    Attr("primary_account", "primary account", ref="account"),
)
ACCOUNT = kit.entity(
    "account",
    "a bank account held by one customer",
    "^AC[0-9]{4}$",
    Attr("customer_id", "account holder", ref="customer"),
    Attr("iban", "IBAN"),
    Attr("nickname", "nickname"),
    Attr("account_type", "account type", answerable=False, enum=ACCOUNT_TYPES),
    Attr("balance", "balance", type="integer"),
    Attr("daily_limit", "daily transfer limit", answerable=False, enum=LIMITS),
    Attr("status", "status", answerable=False, enum=ACCOUNT_STATUSES),
)
CARD = kit.entity(
    "card",
    "a payment card issued on an account",
    "^CD[0-9]{4}$",
    Attr("account_id", "linked account", ref="account"),
    Attr("masked_number", "masked card number"),
    Attr("network", "card network", answerable=False, enum=NETWORKS),
    Attr("expiry", "expiry date", answerable=False),
    Attr("status", "status", answerable=False, enum=CARD_STATUSES),
)
TRANSACTION = kit.entity(
    "transaction",
    "a card payment booked on an account",
    "^TX[0-9]{4}$",
    Attr("account_id", "account", ref="account"),
    Attr("merchant", "merchant"),
    Attr("amount_cents", "amount in cents", type="integer"),
    Attr("reference", "payment reference"),
    Attr("booked_on", "booking date", answerable=False),
    Attr("status", "status", answerable=False, enum=TX_STATUSES),
)
UPDATES = (
    Update(
        name="freeze_card",
        entity="card",
        description="Freeze an active card so that no further payments are authorised.",
        request="freeze {target}",
        confirmation_prefix="FZ",
        sets={"status": "frozen"},
        require={"status": "active"},
    ),
    Update(
        name="set_daily_limit",
        entity="account",
        description="Set the daily transfer limit of an open account.",
        request="set the daily transfer limit of {target} to {value}",
        confirmation_prefix="LM",
        require={"status": "open"},
        param=Attr("daily_limit", "daily transfer limit", answerable=False, enum=LIMITS),
    ),
    Update(
        name="dispute_transaction",
        entity="transaction",
        description="Open a dispute on a posted transaction.",
        request="dispute {target}",
        confirmation_prefix="DP",
        sets={"status": "disputed"},
        require={"status": "posted"},
    ),
)


def world(rng: np.random.Generator) -> dict[str, Any]:
    """6 customers, 9 accounts, 7 cards, 10 transactions; every customer holds at least one account."""
    n_c, n_a, n_d, n_t = 6, 9, 7, 10
    r = kit.words(rng, 2 + n_c + n_a + n_d + n_t)
    g, c = r[0], r[-1]
    city0, seg0, acct_off, nick_off = (g >> 10) % 6, (g >> 13) % 3, (g >> 15) % n_c, (g >> 18) % len(NICKNAMES)
    frozen_off, card_off, status_off = (g >> 22) % 4, (g >> 24) % n_a, (g >> 28) % 3
    tx_off, merch_off, net_off = (g >> 30) % n_a, (g >> 34) % len(MERCHANTS), (g >> 38) % 2

    customers = {}
    for i, d, cid, name, email in kit.people("CU", r[1 : 1 + n_c], g):
        customers[cid] = {
            "customer_id": cid,
            "name": name,
            "email": f"{email}@postbank.example",
            "phone": kit.phone("+44-20", i, d >> 10),
            "city": CITIES[(city0 + i) % 6],
            "segment": SEGMENTS[(seg0 + i) % 3],
            "primary_account": "",
        }
    cust_ids = list(customers)

    accounts = {}
    acct_ids = []
    for i in range(n_a):
        d = r[1 + n_c + i]
        aid = kit.bucket_id("AC", i, d)
        owner = cust_ids[(acct_off + i) % n_c]
        acct_ids.append(aid)
        accounts[aid] = {
            "account_id": aid,
            "customer_id": owner,
            "iban": f"DE{10 + (d >> 10) % 90} {1000 + (d >> 17) % 9000} {kit.bucket(i, d >> 31)} "
            f"{1000 + (d >> 41) % 9000} {1000 + (c >> (40 + i)) % 9000} {10 + (d >> 55) % 90}",
            "nickname": NICKNAMES[(nick_off + i) % len(NICKNAMES)],
            "account_type": ACCOUNT_TYPES[(d >> 20) % 3],
            "balance": 10000 + 5000 * i + (d >> 22) % 5000,
            "daily_limit": LIMITS[(d >> 35) % 5],
            "status": "frozen" if (i + frozen_off) % 4 == 0 else "open",
        }
        if not customers[owner]["primary_account"]:
            customers[owner]["primary_account"] = aid

    cards = {}
    for i in range(n_d):
        d = r[1 + n_c + n_a + i]
        kid = kit.bucket_id("CD", i, d)
        network = (net_off + i) % 2
        cards[kid] = {
            "card_id": kid,
            "account_id": acct_ids[(card_off + i) % n_a],
            "masked_number": f"{network + 4}{100 + (d >> 10) % 900} **** **** {kit.bucket(i, d >> 20)}",
            "network": NETWORKS[network],
            "expiry": f"{1 + (d >> 30) % 12:02d}/{27 + (d >> 34) % 4}",
            "status": "frozen" if (i + status_off) % 3 == 0 else "active",
        }

    transactions = {}
    for i in range(n_t):
        d = r[1 + n_c + n_a + n_d + i]
        tid = kit.bucket_id("TX", i, d)
        transactions[tid] = {
            "transaction_id": tid,
            "account_id": acct_ids[(tx_off + i) % n_a],
            "merchant": MERCHANTS[(merch_off + i) % len(MERCHANTS)],
            "amount_cents": 60000 + 3000 * i + (d >> 10) % 3000,
            "reference": f"RF-{kit.letters(d, 22, 4)}{i:02d}",
            "booked_on": f"2025-{1 + (d >> 42) % 12:02d}-{1 + (d >> 46) % 28:02d}",
            "status": TX_STATUSES[(i + status_off) % 3] if i % 2 else "posted",
        }
    counters = kit.word_counters(UPDATES, c)
    tables = {"customers": customers, "accounts": accounts, "cards": cards, "transactions": transactions}
    return {**tables, "counters": counters}


DESCRIPTION = "Customers, accounts, cards and transactions; look up, freeze cards, set limits, dispute."
DOMAIN = Domain("Banking", 0, DESCRIPTION, (CUSTOMER, ACCOUNT, CARD, TRANSACTION), UPDATES, world)
