"""WeatherTravel: countries, their cities, weather stations, travel advisories and travellers' trips.

Each country has one or two cities and a current travel advisory (one of its own); each city has a main
weather station reporting current conditions; each trip goes to a city. Travellers subscribe to weather alerts,
cancel trips and acknowledge advisories. Chains run trip -> city -> country -> current advisory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolgym.construct import kit
from toolgym.construct.spec import Attr, Domain, Update

# (country, region, currency, calling code, (two cities with their UTC offsets))
COUNTRIES = (
    ("Norway", "Europe", "NOK", "47", (("Bergen", "UTC+1"), ("Tromso", "UTC+1"))),
    ("Peru", "South America", "PEN", "51", (("Cusco", "UTC-5"), ("Arequipa", "UTC-5"))),
    ("Japan", "Asia", "JPY", "81", (("Osaka", "UTC+9"), ("Sapporo", "UTC+9"))),
    ("Kenya", "Africa", "KES", "254", (("Nairobi", "UTC+3"), ("Mombasa", "UTC+3"))),
    ("Chile", "South America", "CLP", "56", (("Valparaiso", "UTC-4"), ("Punta Arenas", "UTC-4"))),
    ("Estonia", "Europe", "EUR", "372", (("Tallinn", "UTC+2"), ("Tartu", "UTC+2"))),
    ("Morocco", "Africa", "MAD", "212", (("Marrakesh", "UTC+1"), ("Fez", "UTC+1"))),
    ("Vietnam", "Asia", "VND", "84", (("Hanoi", "UTC+7"), ("Hue", "UTC+7"))),
    ("Iceland", "Europe", "ISK", "354", (("Reykjavik", "UTC+0"), ("Akureyri", "UTC+0"))),
    ("Canada", "North America", "CAD", "1", (("Halifax", "UTC-4"), ("Winnipeg", "UTC-6"))),
    ("Nepal", "Asia", "NPR", "977", (("Kathmandu", "UTC+5:45"), ("Pokhara", "UTC+5:45"))),
    ("Australia", "Oceania", "AUD", "61", (("Hobart", "UTC+10"), ("Darwin", "UTC+9:30"))),
)
REGIONS = ("Europe", "South America", "Asia", "Africa", "North America", "Oceania")
CURRENCIES = tuple(c[2] for c in COUNTRIES)
CONDITIONS = ("sunny", "cloudy", "rain", "snow", "thunderstorm", "fog", "windy")
HAZARDS = ("flooding", "wildfire", "civil unrest", "heatwave", "volcanic ash", "tropical storm", "landslides")
TRIP_STATUSES = ("booked", "cancelled")
CHANNELS = ("none", "email", "sms", "push")

COUNTRY = kit.entity(
    "country",
    "a destination country",
    "^CY[0-9]{5}$",
    Attr("name", "name"),
    Attr("region", "region", answerable=False, enum=REGIONS),
    Attr("currency", "currency", answerable=False, enum=CURRENCIES),
    Attr("embassy_phone", "embassy phone number"),
    Attr("current_advisory", "current travel advisory", ref="advisory"),
    table="countries",
)
CITY = kit.entity(
    "city",
    "a destination city",
    "^CT[0-9]{5}$",
    Attr("name", "name"),
    Attr("country_id", "country", ref="country"),
    Attr("population", "population", type="integer"),
    Attr("timezone", "time zone", answerable=False),
    Attr("main_station", "main weather station", ref="station"),
    table="cities",
)
STATION = kit.entity(
    "station",
    "a weather station and its latest report",
    "^WS[0-9]{5}$",
    Attr("city_id", "city", ref="city"),
    Attr("call_sign", "call sign"),
    Attr("condition", "current condition", answerable=False, enum=CONDITIONS),
    Attr("temperature_c", "temperature in degrees Celsius", type="integer", answerable=False),
    Attr("wind_kph", "wind speed in km/h", type="integer", answerable=False),
    Attr("humidity_pct", "relative humidity in percent", type="integer", answerable=False),
    label="weather station {station_id}",
)
ADVISORY = kit.entity(
    "advisory",
    "a travel advisory issued for a country",
    "^AV[0-9]{5}$",
    Attr("country_id", "country", ref="country"),
    Attr("reference_code", "reference code"),
    Attr("hazard", "hazard", answerable=False, enum=HAZARDS),
    Attr("level", "advisory level", type="integer", answerable=False),
    Attr("issued_on", "issue date", answerable=False),
    Attr("acknowledged", "acknowledgement status", type="boolean", answerable=False),
    table="advisories",
)
TRIP = kit.entity(
    "trip",
    "a traveller's booked trip to a city",
    "^TP[0-9]{5}$",
    Attr("traveller", "traveller"),
    Attr("city_id", "destination city", ref="city"),
    Attr("departure_date", "departure date", answerable=False),
    Attr("booking_code", "booking code"),
    Attr("status", "status", answerable=False, enum=TRIP_STATUSES),
    Attr("alert_channel", "weather alert channel", answerable=False, enum=CHANNELS),
)
UPDATES = (
    Update(
        name="subscribe_alerts",
        entity="trip",
        description="Subscribe a booked trip to weather alerts for its destination on the given channel.",
        request="subscribe {target} to weather alerts by {value}",
        confirmation_prefix="SA",
        require={"status": "booked"},
        param=Attr("alert_channel", "weather alert channel", answerable=False, enum=CHANNELS),
    ),
    Update(
        name="cancel_trip",
        entity="trip",
        description="Cancel a booked trip.",
        request="cancel {target}",
        confirmation_prefix="XT",
        sets={"status": "cancelled"},
        require={"status": "booked"},
    ),
    Update(
        name="acknowledge_advisory",
        entity="advisory",
        description="Acknowledge a travel advisory that has not been acknowledged yet.",
        request="acknowledge {target}",
        confirmation_prefix="AK",
        sets={"acknowledged": True},
        require={"acknowledged": False},
    ),
)

N_COUNTRY, N_CITY, N_ADVISORY, N_TRIP = 6, 8, 8, 10
_N_COUNTRIES, _N_FIRST = len(COUNTRIES), len(kit.FIRST)
_N_DRAWS = _N_COUNTRIES + _N_FIRST + 16 + 4 * N_CITY + 3 * N_ADVISORY + 4 * N_TRIP
# Precomputed strings: f-strings with format specs cost ~1 us each here, a table lookup ~0.1 us.
NAMES = kit.full_names(kit.FIRST, kit.LAST)


def world(rng: np.random.Generator) -> dict[str, Any]:
    """6 countries, 8 cities (one main station each), 8 advisories, 10 trips.

    Countries 0 and 1 have two cities and two advisories (the later one is current), the others one of each,
    and trips cycle over the cities from a random offset, so every ref column has unique and repeated values.
    """
    u = kit.Uniforms(rng, _N_DRAWS)
    pick = u.order(_N_COUNTRIES)
    firsts = u.order(_N_FIRST)
    g = u.take(16)
    country_ids = kit.strided_ids("CY", N_COUNTRY, g[0], g[1])
    city_ids = kit.strided_ids("CT", N_CITY, g[2], g[3])
    station_ids = kit.strided_ids("WS", N_CITY, g[2], g[3], offset=4409)
    advisory_ids = kit.strided_ids("AV", N_ADVISORY, g[4], g[5])
    trip_ids = kit.strided_ids("TP", N_TRIP, g[6], g[7])

    countries, cities, stations, advisories, trips = {}, {}, {}, {}, {}
    b = int(g[8] * 1000)
    for i in range(N_COUNTRY):
        name, region, currency, code, _ = COUNTRIES[pick[i]]
        cid = country_ids[i]
        countries[cid] = {
            "country_id": cid,
            "name": name,
            "region": region,
            "currency": currency,
            "embassy_phone": "+"
            + code
            + " 2"
            + str(100 + (b + i * 131) % 900)
            + " "
            + str(4100 + (b * 7 + i * 2713) % 5900),
            "current_advisory": "",
        }
    d = u.take(4 * N_CITY)
    for i in range(N_CITY):
        c = i % N_COUNTRY
        city, tz = COUNTRIES[pick[c]][4][i // N_COUNTRY]
        cid, sid = city_ids[i], station_ids[i]
        x, y, z, w = d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]
        cities[cid] = {
            "city_id": cid,
            "name": city,
            "country_id": country_ids[c],
            "population": 100000 + int(x * 8990) * 100 + i * 11,  # last digits unique
            "timezone": tz,
            "main_station": sid,
        }
        stations[sid] = {
            "station_id": sid,
            "city_id": cid,
            "call_sign": "WX-" + kit.PAIRS[int(y * 400)] + str(i),
            "condition": CONDITIONS[int(w * 7)],
            "temperature_c": int(y * 40) - 8,
            "wind_kph": int(z * 60),
            "humidity_pct": 20 + int(x * 7919) % 80,
        }
    d = u.take(3 * N_ADVISORY)
    for i in range(N_ADVISORY):
        aid, cid = advisory_ids[i], country_ids[i % N_COUNTRY]
        x, y, z = d[3 * i], d[3 * i + 1], d[3 * i + 2]
        advisories[aid] = {
            "advisory_id": aid,
            "country_id": cid,
            "reference_code": "TA-" + kit.PAIRS[int(x * 400)] + str(i) + str(10 + int(z * 90)),
            "hazard": HAZARDS[int(y * 7)],
            "level": 1 + int(z * 4),
            "issued_on": kit.DATES[int(x * 336)],
            "acknowledged": i % 3 == 0,
        }
        countries[cid]["current_advisory"] = aid
    d = u.take(4 * N_TRIP)
    off = int(g[11] * N_CITY)
    for i in range(N_TRIP):
        tid = trip_ids[i]
        x, y, z, w = d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]
        trips[tid] = {
            "trip_id": tid,
            "traveller": NAMES[firsts[i] * 10 + int(x * 10)],
            "city_id": city_ids[(off + i) % N_CITY],
            "departure_date": kit.DATES[int(y * 336)],
            "booking_code": "BK-" + kit.PAIRS[int(z * 400)] + str(i),
            "status": "cancelled" if i % 4 == 3 else "booked",
            "alert_channel": CHANNELS[int(w * 4)],
        }
    counters = kit.uniform_counters(UPDATES, g[12:15])
    tables = {"countries": countries, "cities": cities, "stations": stations, "advisories": advisories, "trips": trips}
    return {**tables, "counters": counters}


DESCRIPTION = "Countries, cities, weather stations, travel advisories and trips; subscribe, cancel, acknowledge."
DOMAIN = Domain("WeatherTravel", 0, DESCRIPTION, (COUNTRY, CITY, STATION, ADVISORY, TRIP), UPDATES, world)
