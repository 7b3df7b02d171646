"""ECommerceOrders: shop customers, the product catalogue, orders and the shipments of dispatched orders.

Customers cancel orders that have not shipped, change their shipping speed and request returns of delivered
orders. Chains: customer -> latest order -> product, shipment -> order -> customer or product. Product prices
are 5-digit cent amounts; every other digit run in the world is at most 4 digits long, so no answer hides
inside another record.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolgym.construct import kit
from toolgym.construct.spec import Attr, Domain, Update

CITIES = ("Austin", "Leipzig", "Malmo", "Cork", "Nantes", "Porto", "Krakow")
TIERS = ("standard", "plus", "vip")
BRANDS = ("Nimbus", "Halcyon", "Ferro", "Kestrel", "Lumina", "Brisa", "Talon", "Umbra", "Vireo", "Zephyr")
ITEMS = (
    "Desk Lamp",
    "Kettle",
    "Backpack",
    "Headphones",
    "Yoga Mat",
    "Blender",
    "Rain Jacket",
    "Water Bottle",
    "Air Purifier",
    "Office Chair",
    "Smart Watch",
)
CATEGORIES = ("home", "outdoor", "electronics", "fitness")
ITEM_CATEGORY = (0, 0, 1, 2, 3, 0, 1, 3, 0, 0, 2)
SPEEDS = ("standard", "express", "overnight")
ORDER_STATUSES = ("placed", "shipped", "delivered", "cancelled", "return_requested")
# Status of order i is STATUS_CYCLE[(i + offset) % 10]: every world has orders each update can and cannot act on.
STATUS_CYCLE = (0, 1, 2, 0, 2, 3, 1, 2, 0, 4)
CARRIERS = ("UPS", "DHL", "FedEx", "GLS")
CARRIER_CODES = ("1Z", "JD", "FX", "GL")
SHIPMENT_STATUSES = ("in_transit", "delivered")

CUSTOMER = kit.entity(
    "customer",
    "a registered shop customer",
    "^CS[0-9]{4}$",
    Attr("name", "full name"),
    Attr("email", "email address"),
    Attr("phone", "phone number"),
    Attr("city", "city", answerable=False),
    Attr("tier", "membership tier", answerable=False, enum=TIERS),
    Attr("last_order", "latest order", ref="order"),
)
PRODUCT = kit.entity(
    "product",
    "a product in the catalogue",
    "^PR[0-9]{4}$",
    Attr("name", "name"),
    Attr("sku", "SKU"),
    Attr("price_cents", "price in cents", type="integer"),
    Attr("category", "category", answerable=False, enum=CATEGORIES),
    Attr("in_stock", "stock status", type="boolean", answerable=False),
)
ORDER = kit.entity(
    "order",
    "a customer's order of one product",
    "^OD[0-9]{4}$",
    Attr("customer_id", "customer", ref="customer"),
    Attr("product_id", "product", ref="product"),
    Attr("quantity", "quantity", type="integer", answerable=False),
    Attr("invoice_number", "invoice number"),
    Attr("placed_on", "order date", answerable=False),
    Attr("shipping_speed", "shipping speed", answerable=False, enum=SPEEDS),
    Attr("status", "status", answerable=False, enum=ORDER_STATUSES),
)
SHIPMENT = kit.entity(
    "shipment",
    "the parcel shipment of a dispatched order",
    "^SH[0-9]{4}$",
    Attr("order_id", "order", ref="order"),
    Attr("carrier", "carrier", answerable=False, enum=CARRIERS),
    Attr("tracking_number", "tracking number"),
    Attr("eta", "estimated delivery date", answerable=False),
    Attr("status", "status", answerable=False, enum=SHIPMENT_STATUSES),
)
UPDATES = (
    Update(
        name="cancel_order",
        entity="order",
        description="Cancel an order that has been placed but not shipped yet.",
        request="cancel {target}",
        confirmation_prefix="CN",
        sets={"status": "cancelled"},
        require={"status": "placed"},
    ),
    Update(
        name="change_shipping_speed",
        entity="order",
        description="Change the shipping speed of an order that has not shipped yet.",
        request="change the shipping speed of {target} to {value}",
        confirmation_prefix="SV",
        require={"status": "placed"},
        param=Attr("shipping_speed", "shipping speed", answerable=False, enum=SPEEDS),
    ),
    Update(
        name="request_return",
        entity="order",
        description="Request the return of a delivered order.",
        request="request a return of {target}",
        confirmation_prefix="RR",
        sets={"status": "return_requested"},
        require={"status": "delivered"},
    ),
)


def world(rng: np.random.Generator) -> dict[str, Any]:
    """7 customers, 8 products, 10 orders, one shipment per dispatched order (6); every customer has ordered."""
    n_c, n_p, n_o = 7, 8, 10
    r = kit.words(rng, 2 + n_c + n_p + 2 * n_o)
    g, c = r[0], r[1]
    city0, tier0, brand0, item0 = (g >> 10) % 7, (g >> 13) % 3, (g >> 15) % 10, (g >> 19) % 11
    cust_off, prod_off, status_off, day0 = (g >> 23) % n_c, (g >> 26) % n_p, (g >> 29) % 10, (g >> 33) % 11

    customers = {}
    for i, d, cid, name, email in kit.people("CS", r[2 : 2 + n_c], g):
        customers[cid] = {
            "customer_id": cid,
            "name": name,
            "email": f"{email}@shopmail.example",
            "phone": kit.phone("+1-415", i, d >> 10),
            "city": CITIES[(city0 + i) % 7],
            "tier": TIERS[(tier0 + i) % 3],
            "last_order": "",
        }
    cust_ids = list(customers)

    products = {}
    prod_ids = []
    for i in range(n_p):
        d = r[2 + n_c + i]
        pid = kit.bucket_id("PR", i, d)
        item = (item0 + i) % 11
        prod_ids.append(pid)
        products[pid] = {
            "product_id": pid,
            "name": f"{BRANDS[(brand0 + i) % 10]} {ITEMS[item]}",
            "sku": f"SKU-{kit.letters(d, 10, 3)}-{i:02d}",
            "price_cents": 10000 + 4000 * i + (d >> 25) % 4000,
            "category": CATEGORIES[ITEM_CATEGORY[item]],
            "in_stock": bool((d >> 40) % 4),
        }

    orders = {}
    shipments = {}
    for i in range(n_o):
        d = r[2 + n_c + n_p + i]
        oid = kit.bucket_id("OD", i, d)
        cid = cust_ids[(cust_off + i) % n_c]
        status = STATUS_CYCLE[(status_off + i) % 10]
        day = 1 + day0 + i
        orders[oid] = {
            "order_id": oid,
            "customer_id": cid,
            "product_id": prod_ids[(prod_off + 3 * i) % n_p],
            "quantity": 1 + (d >> 10) % 3,
            "invoice_number": f"INV-{kit.letters(d, 12, 3)}{i:02d}",
            "placed_on": f"2025-05-{day:02d}",
            "shipping_speed": SPEEDS[(d >> 27) % 3],
            "status": ORDER_STATUSES[status],
        }
        customers[cid]["last_order"] = oid
        if status in (1, 2, 4):  # dispatched: shipped, delivered or being returned
            e = r[2 + n_c + n_p + n_o + i]
            sid = kit.bucket_id("SH", i, e)
            k = (e >> 10) % 4
            shipments[sid] = {
                "shipment_id": sid,
                "order_id": oid,
                "carrier": CARRIERS[k],
                "tracking_number": f"{CARRIER_CODES[k]}{kit.letters(e, 12, 2)}"
                f"{kit.bucket(i, e >> 22)}{kit.letters(e, 32, 2)}",
                "eta": f"2025-05-{day + 3 + (e >> 42) % 3:02d}",
                "status": SHIPMENT_STATUSES[status != 1],
            }
    counters = kit.word_counters(UPDATES, c)
    tables = {"customers": customers, "products": products, "orders": orders, "shipments": shipments}
    return {**tables, "counters": counters}


DESCRIPTION = "Customers, products, orders and shipments; look up, cancel, change shipping speed, return."
DOMAIN = Domain("ECommerceOrders", 0, DESCRIPTION, (CUSTOMER, PRODUCT, ORDER, SHIPMENT), UPDATES, world)
