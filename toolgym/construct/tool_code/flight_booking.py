CABINS = ["economy", "premium", "business"]
CABIN_ROWS = {"business": [10, 13], "premium": [14, 17], "economy": [18, 39]}
SEAT_LETTERS = "ABCDEF"
PAY_METHODS = ["card", "miles", "voucher"]
TIERS = ["basic", "silver", "gold"]


def util_error(message):
    return {"error": message}


def util_text(value):
    if isinstance(value, str):
        return value.strip()
    return None


def util_flight(flight_id):
    key = util_text(flight_id)
    if key is None:
        return None
    return state["flights"].get(key.upper())


def util_booking(booking_id):
    key = util_text(booking_id)
    if key is None:
        return None
    return state["bookings"].get(key.upper())


def util_passenger(name):
    key = util_text(name)
    if key is None:
        return None
    key = key.lower()
    for person in state["passengers"].values():
        if person["name"].lower() == key:
            return person
    return None


def util_cabin(cabin):
    key = util_text(cabin)
    if key is None or key.lower() not in CABINS:
        return None
    return key.lower()


def util_no_flight(flight_id):
    return util_error(f"unknown flight id {flight_id!r}; flight ids look like 'FL1234'")


def util_no_booking(booking_id):
    return util_error(f"unknown booking id {booking_id!r}; booking ids look like 'BK3F9A'")


def util_bad_cabin(cabin):
    return util_error(f"invalid cabin {cabin!r}; use one of economy, premium, business")


def util_is_date(text):
    if not isinstance(text, str) or len(text) != 10 or text[4] != "-" or text[7] != "-":
        return False
    return (text[0:4] + text[5:7] + text[8:10]).isdigit()


def util_seat_ok(cabin, seat):
    if not isinstance(seat, str) or len(seat) < 2 or len(seat) > 3:
        return False
    row = seat[:-1]
    if not row.isdigit() or seat[-1] not in SEAT_LETTERS:
        return False
    bounds = CABIN_ROWS[cabin]
    return bounds[0] <= int(row) <= bounds[1]


def util_seat_taken(flight_id, seat, skip):
    for booking in state["bookings"].values():
        if booking["flight_id"] == flight_id and booking["status"] == "confirmed":
            if booking["seat"] == seat and booking["booking_id"] != skip:
                return True
    return False


def search_flights(origin, destination, date):
    o = (util_text(origin) or "").upper()
    d = (util_text(destination) or "").upper()
    if o not in state["airports"]:
        return util_error(f"unknown origin airport code {origin!r}")
    if d not in state["airports"]:
        return util_error(f"unknown destination airport code {destination!r}")
    if not util_is_date(date):
        return util_error(f"invalid date {date!r}; use YYYY-MM-DD")
    found = [
        f
        for f in state["flights"].values()
        if f["origin"] == o and f["destination"] == d and f["date"] == date and f["status"] != "cancelled"
    ]
    rows = [
        {
            "flight_id": f["flight_id"],
            "airline": f["airline"],
            "departure": f["departure"],
            "arrival": f["arrival"],
            "status": f["status"],
            "fares": {c: f["fares"][c] for c in CABINS},
        }
        for f in sorted(found, key=lambda f: f["departure"])
    ]
    return {"origin": o, "destination": d, "date": date, "currency": state["currency"], "flights": rows}


def get_flight_details(flight_id):
    f = util_flight(flight_id)
    if f is None:
        return util_no_flight(flight_id)
    keys = [
        "flight_id",
        "airline",
        "origin",
        "destination",
        "date",
        "departure",
        "arrival",
        "arrives_next_day",
        "duration_minutes",
        "status",
    ]
    return {k: f[k] for k in keys}


def get_flight_status(flight_id):
    f = util_flight(flight_id)
    if f is None:
        return util_no_flight(flight_id)
    return {"flight_id": f["flight_id"], "status": f["status"], "delay_minutes": f["delay_minutes"], "gate": f["gate"]}


def get_fare(flight_id, cabin):
    f = util_flight(flight_id)
    if f is None:
        return util_no_flight(flight_id)
    c = util_cabin(cabin)
    if c is None:
        return util_bad_cabin(cabin)
    return {"flight_id": f["flight_id"], "cabin": c, "fare": f["fares"][c], "currency": state["currency"]}


def get_seat_availability(flight_id, cabin=None):
    f = util_flight(flight_id)
    if f is None:
        return util_no_flight(flight_id)
    if cabin is None:
        return {"flight_id": f["flight_id"], "seats_left": {c: f["seats_left"][c] for c in CABINS}}
    c = util_cabin(cabin)
    if c is None:
        return util_bad_cabin(cabin)
    return {"flight_id": f["flight_id"], "cabin": c, "seats_left": f["seats_left"][c]}


def get_baggage_policy(airline_code):
    code = (util_text(airline_code) or "").upper()
    a = state["airlines"].get(code)
    if a is None:
        return util_error(f"unknown airline code {airline_code!r}")
    return {
        "airline_code": code,
        "airline": a["name"],
        "free_checked_bags": {c: a["free_bags"][c] for c in CABINS},
        "extra_bag_fee": a["bag_fee"],
        "carry_on_kg": a["carry_on_kg"],
        "currency": state["currency"],
    }


def get_booking(booking_id):
    b = util_booking(booking_id)
    if b is None:
        return util_no_booking(booking_id)
    return {k: v for k, v in b.items()}


def get_airport_info(code):
    key = (util_text(code) or "").upper()
    a = state["airports"].get(key)
    if a is None:
        return util_error(f"unknown airport code {code!r}")
    return {k: v for k, v in a.items()}


def find_bookings_by_passenger(name):
    person = util_passenger(name)
    if person is None:
        return util_error(f"no passenger named {name!r}")
    rows = [
        {"booking_id": b["booking_id"], "cabin": b["cabin"], "status": b["status"]}
        for b in state["bookings"].values()
        if b["passenger"] == person["name"]
    ]
    return {"passenger": person["name"], "bookings": rows}


def get_passenger_profile(name):
    person = util_passenger(name)
    if person is None:
        return util_error(f"no passenger named {name!r}")
    return {k: v for k, v in person.items()}


def book_flight(flight_id, passenger, cabin):
    f = util_flight(flight_id)
    if f is None:
        return util_no_flight(flight_id)
    c = util_cabin(cabin)
    if c is None:
        return util_bad_cabin(cabin)
    person = util_passenger(passenger)
    if person is None:
        return util_error(f"no passenger profile named {passenger!r}; passengers must be registered")
    if f["status"] == "cancelled":
        return util_error(f"flight {f['flight_id']} is cancelled and cannot be booked")
    if f["seats_left"][c] <= 0:
        return util_error(f"no {c} seats left on flight {f['flight_id']}")
    bounds = CABIN_ROWS[c]
    seat = None
    for row in range(bounds[0], bounds[1] + 1):
        for letter in SEAT_LETTERS:
            label = f"{row}{letter}"
            if seat is None and not util_seat_taken(f["flight_id"], label, ""):
                seat = label
    counters = state["counters"]
    booking_id = f"BK{counters['next_booking']}"
    counters["next_booking"] = counters["next_booking"] + 1
    f["seats_left"][c] = f["seats_left"][c] - 1
    booking = {
        "booking_id": booking_id,
        "passenger": person["name"],
        "flight_id": f["flight_id"],
        "cabin": c,
        "seat": seat,
        "amount": f["fares"][c],
        "currency": state["currency"],
        "paid": False,
        "payment_method": None,
        "status": "confirmed",
    }
    state["bookings"][booking_id] = booking
    return {k: v for k, v in booking.items()}


def cancel_booking(booking_id):
    b = util_booking(booking_id)
    if b is None:
        return util_no_booking(booking_id)
    if b["status"] != "confirmed":
        return util_error(f"booking {b['booking_id']} is already {b['status']}")
    refund = b["amount"] if b["paid"] else 0
    b["status"] = "cancelled"
    f = state["flights"].get(b["flight_id"])
    if f is not None:
        f["seats_left"][b["cabin"]] = f["seats_left"][b["cabin"]] + 1
    return {"booking_id": b["booking_id"], "status": "cancelled", "refund": refund, "currency": b["currency"]}


def change_seat(booking_id, seat):
    b = util_booking(booking_id)
    if b is None:
        return util_no_booking(booking_id)
    if b["status"] != "confirmed":
        return util_error(f"booking {b['booking_id']} is {b['status']}; only confirmed ones can change seat")
    label = (util_text(seat) or "").upper()
    if not util_seat_ok(b["cabin"], label):
        bounds = CABIN_ROWS[b["cabin"]]
        return util_error(
            f"invalid seat {seat!r} for {b['cabin']}: use rows {bounds[0]}-{bounds[1]} and letters A-F, e.g. "
            f"'{bounds[0]}C'"
        )
    if util_seat_taken(b["flight_id"], label, b["booking_id"]):
        return util_error(f"seat {label} on flight {b['flight_id']} is already taken")
    previous = b["seat"]
    b["seat"] = label
    return {"booking_id": b["booking_id"], "flight_id": b["flight_id"], "previous_seat": previous, "seat": label}


def pay_booking(booking_id, method):
    b = util_booking(booking_id)
    if b is None:
        return util_no_booking(booking_id)
    m = (util_text(method) or "").lower()
    if m not in PAY_METHODS:
        return util_error(f"invalid payment method {method!r}; use one of card, miles, voucher")
    if b["status"] != "confirmed":
        return util_error(f"booking {b['booking_id']} is {b['status']} and cannot be paid")
    if b["paid"]:
        return util_error(f"booking {b['booking_id']} is already paid")
    counters = state["counters"]
    confirmation = f"PAY{counters['next_payment']}"
    counters["next_payment"] = counters["next_payment"] + 1
    b["paid"] = True
    b["payment_method"] = m
    b["confirmation"] = confirmation
    return {
        "booking_id": b["booking_id"],
        "paid": True,
        "amount": b["amount"],
        "currency": b["currency"],
        "method": m,
        "confirmation": confirmation,
    }


def search_flight(origin, destination):
    o = (util_text(origin) or "").upper()
    d = (util_text(destination) or "").upper()
    if o not in state["airports"] or d not in state["airports"]:
        return util_error("unknown airport code; use three-letter codes such as 'LHR'")
    names = sorted(
        {
            state["airlines"][f["airline"]]["name"]
            for f in state["flights"].values()
            if f["origin"] == o and f["destination"] == d
        }
    )
    return {
        "route": f"{o}-{d}",
        "operating_airlines": names,
        "note": "timetable overview only; dated flights and fares come from the flight search",
    }


def get_flight_detail(flight_id):
    f = util_flight(flight_id)
    if f is None:
        return util_no_flight(flight_id)
    digit = int(f["flight_id"][-1])
    aircraft = ["Airbus A320", "Boeing 737", "Airbus A321", "Embraer E190"][digit % 4]
    return {
        "flight_id": f["flight_id"],
        "aircraft": aircraft,
        "meal_service": ["snacks", "hot meal"][digit % 2],
        "wifi": digit % 3 != 0,
    }


def get_booking_info(booking_id):
    b = util_booking(booking_id)
    if b is None:
        return util_no_booking(booking_id)
    return {
        "booking_id": b["booking_id"],
        "contact_preference": ["email", "sms"][len(b["passenger"]) % 2],
        "special_requests": [["none"], ["vegetarian meal"], ["wheelchair"]][len(b["passenger"]) % 3],
    }


def get_airline_contact(airline_code):
    code = (util_text(airline_code) or "").upper()
    a = state["airlines"].get(code)
    if a is None:
        return util_error(f"unknown airline code {airline_code!r}")
    slug = a["name"].lower().replace(" ", "")
    return {"airline": a["name"], "website": f"https://www.{slug}.example", "email": f"help@{slug}.example"}


def get_fare_rules(flight_id, cabin):
    f = util_flight(flight_id)
    if f is None:
        return util_no_flight(flight_id)
    c = util_cabin(cabin)
    if c is None:
        return util_bad_cabin(cabin)
    return {
        "flight_id": f["flight_id"],
        "cabin": c,
        "refundable": c != "economy",
        "changes": "free" if c == "business" else "allowed for a fee",
    }


def get_lounge_access(airport_code):
    code = (util_text(airport_code) or "").upper()
    if code not in state["airports"]:
        return util_error(f"unknown airport code {airport_code!r}")
    return {
        "airport": code,
        "lounges": ["Skyline Lounge", "Horizon Club"][: 1 + len(code) % 2],
        "access": "business cabin or gold tier",
    }


def get_weather(airport_code):
    code = (util_text(airport_code) or "").upper()
    if code not in state["airports"]:
        return util_error(f"unknown airport code {airport_code!r}")
    return {"airport": code, "forecast": ["clear", "light rain", "cloudy", "windy"][ord(code[0]) % 4]}


def get_seat_map(flight_id, cabin):
    f = util_flight(flight_id)
    if f is None:
        return util_no_flight(flight_id)
    c = util_cabin(cabin)
    if c is None:
        return util_bad_cabin(cabin)
    return {"flight_id": f["flight_id"], "cabin": c, "rows": CABIN_ROWS[c], "letters": SEAT_LETTERS}


def get_loyalty_benefits(tier):
    t = (util_text(tier) or "").lower()
    if t not in TIERS:
        return util_error(f"invalid tier {tier!r}; use one of basic, silver, gold")
    perks = {
        "basic": ["earn miles"],
        "silver": ["earn miles", "priority check-in"],
        "gold": ["earn miles", "priority check-in", "lounge access"],
    }
    return {"tier": t, "benefits": perks[t]}


def get_check_in_window(flight_id):
    f = util_flight(flight_id)
    if f is None:
        return util_no_flight(flight_id)
    return {"flight_id": f["flight_id"], "opens_hours_before": 24, "closes_minutes_before": 45}


def get_booking_status(booking_id):
    b = util_booking(booking_id)
    if b is None:
        return util_no_booking(booking_id)
    return {"booking_id": b["booking_id"], "status": b["status"]}


def get_airport_details(code):
    key = (util_text(code) or "").upper()
    if key not in state["airports"]:
        return util_error(f"unknown airport code {code!r}")
    return {"code": key, "terminals": ["T1", "T2"][: 1 + ord(key[1]) % 2], "public_transport": "rail and bus"}
