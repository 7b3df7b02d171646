"""HealthcareAppointments: clinics, the doctors working at them, patients and their appointments.

Every doctor works at one clinic; every appointment books one patient with one doctor, and each patient's next
appointment is one of their own. Patients cancel, move to another time slot and check in. Chains run
patient -> next appointment -> doctor -> clinic.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolgym.construct import kit
from toolgym.construct.spec import Attr, Domain, Update

# (clinic name, city, street): clinic names share no words with streets or people.
CLINICS = (
    ("Riverside Family Clinic", "Leeds", "Wharf Road"),
    ("Northgate Medical Centre", "York", "Minster Lane"),
    ("Elmwood Health Practice", "Bristol", "Clifton Hill"),
    ("Harbourview Clinic", "Plymouth", "Quay Street"),
    ("St Brigid Polyclinic", "Belfast", "Ormeau Road"),
    ("Meadowbank Surgery", "Edinburgh", "Leith Walk"),
    ("Kingsway Diagnostic Centre", "Cardiff", "Castle Arcade"),
    ("Oakhurst Care Clinic", "Norwich", "Elm Hill"),
)
CITIES = tuple(sorted({c[1] for c in CLINICS}))
SPECIALTIES = ("general practice", "cardiology", "dermatology", "paediatrics", "orthopaedics", "neurology")
DOCTOR_FIRST = ("Adaeze", "Benedikt", "Camille", "Dariusz", "Elif", "Fiona", "Gustavo", "Hana", "Ivan", "Jia")
DOCTOR_LAST = ("Achterberg", "Bellamy", "Castellanos", "Dlamini", "Eriksen", "Fitzgerald", "Gallo", "Horvath")
PATIENT_FIRST, PATIENT_LAST = kit.FIRST[:11], kit.LAST
SLOTS = ("08:30", "09:15", "10:00", "11:30", "13:45", "14:30", "15:15", "16:00")
APPOINTMENT_STATUSES = ("scheduled", "cancelled", "completed")

CLINIC = kit.entity(
    "clinic",
    "a clinic where doctors see patients",
    "^CL[0-9]{5}$",
    Attr("name", "name"),
    Attr("city", "city", answerable=False, enum=CITIES),
    Attr("address", "street address"),
    Attr("phone", "phone number"),
    Attr("accepts_walk_ins", "walk-in policy", type="boolean", answerable=False),
)
DOCTOR = kit.entity(
    "doctor",
    "a doctor working at a clinic",
    "^DR[0-9]{5}$",
    Attr("name", "name"),
    Attr("specialty", "specialty", answerable=False, enum=SPECIALTIES),
    Attr("clinic_id", "clinic", ref="clinic"),
    Attr("license_number", "medical license number"),
    Attr("email", "email address"),
)
PATIENT = kit.entity(
    "patient",
    "a registered patient",
    "^PT[0-9]{5}$",
    Attr("name", "name"),
    Attr("date_of_birth", "date of birth", answerable=False),
    Attr("insurance_number", "insurance number"),
    Attr("phone", "phone number"),
    Attr("next_appointment", "next appointment", ref="appointment"),
)
APPOINTMENT = kit.entity(
    "appointment",
    "a patient's appointment with a doctor",
    "^AP[0-9]{5}$",
    Attr("patient_id", "patient", ref="patient"),
    Attr("doctor_id", "doctor", ref="doctor"),
    Attr("date", "date", answerable=False),
    Attr("slot", "time slot", answerable=False, enum=SLOTS),
    Attr("status", "status", answerable=False, enum=APPOINTMENT_STATUSES),
    Attr("checked_in", "check-in status", type="boolean", answerable=False),
)
UPDATES = (
    Update(
        name="cancel_appointment",
        entity="appointment",
        description="Cancel a scheduled appointment.",
        request="cancel {target}",
        confirmation_prefix="CA",
        sets={"status": "cancelled"},
        require={"status": "scheduled"},
    ),
    Update(
        name="reschedule_slot",
        entity="appointment",
        description="Move a scheduled appointment to another time slot on the same day.",
        request="move {target} to the {value} slot",
        confirmation_prefix="RS",
        require={"status": "scheduled"},
        param=Attr("slot", "time slot", answerable=False, enum=SLOTS),
    ),
    Update(
        name="check_in",
        entity="appointment",
        description="Check the patient in for a scheduled appointment they have not checked in for yet.",
        request="check in for {target}",
        confirmation_prefix="CI",
        sets={"checked_in": True},
        require={"status": "scheduled", "checked_in": False},
    ),
)

N_CLINIC, N_DOCTOR, N_PATIENT, N_APPOINTMENT = 6, 7, 8, 11
_N_CLINICS, _N_DOCTOR_FIRST, _N_PATIENT_FIRST = len(CLINICS), len(DOCTOR_FIRST), len(PATIENT_FIRST)
_N_DRAWS = _N_CLINICS + _N_DOCTOR_FIRST + _N_PATIENT_FIRST + 16 + 2 * N_DOCTOR + 3 * N_PATIENT + 3 * N_APPOINTMENT
# Precomputed strings: f-strings with format specs cost ~1 us each here, a table lookup ~0.1 us.
BIRTHDAYS = tuple(f"{y}-{m:02d}-{d:02d}" for y in range(1940, 2020, 3) for m in range(1, 13) for d in range(1, 29, 3))
DOCTORS = kit.full_names(DOCTOR_FIRST, DOCTOR_LAST)
DOCTOR_EMAILS = tuple(f"{f[0].lower()}.{last.lower()}" for f in DOCTOR_FIRST for last in DOCTOR_LAST)
PATIENTS = kit.full_names(PATIENT_FIRST, PATIENT_LAST)
_N_BIRTHDAYS = len(BIRTHDAYS)


def world(rng: np.random.Generator) -> dict[str, Any]:
    """6 clinics, 7 doctors, 8 patients, 11 appointments.

    Clinic 0 has two doctors, the others one; appointments cycle over patients and doctors from random
    offsets, and each patient's next appointment is the last one booked for them, so every ref column holds
    unique and repeated values.
    """
    u = kit.Uniforms(rng, _N_DRAWS)
    clinics = u.order(_N_CLINICS)
    dfirst = u.order(_N_DOCTOR_FIRST)
    pfirst = u.order(_N_PATIENT_FIRST)
    g = u.take(16)
    clinic_ids = kit.strided_ids("CL", N_CLINIC, g[0], g[1])
    doctor_ids = kit.strided_ids("DR", N_DOCTOR, g[0], g[1], offset=41017)
    patient_ids = kit.strided_ids("PT", N_PATIENT, g[2], g[3])
    appointment_ids = kit.strided_ids("AP", N_APPOINTMENT, g[4], g[5])

    clinic_table, doctors, patients, appointments = {}, {}, {}, {}
    b = int(g[6] * 9000)
    for i in range(N_CLINIC):
        cid = clinic_ids[i]
        name, city, street = CLINICS[clinics[i]]
        clinic_table[cid] = {
            "clinic_id": cid,
            "name": name,
            "city": city,
            "address": str(12 + (b + i * 37) % 180) + " " + street,
            "phone": "+44 20 " + str(1000 + (b + i * 2713) % 9000) + " " + str(2000 + (b * 3 + i * 1171) % 8000),
            "accepts_walk_ins": i % 2 == 0,
        }
    d = u.take(2 * N_DOCTOR)
    b = int(g[7] * 900000)
    for i in range(N_DOCTOR):
        did, x, y = doctor_ids[i], d[2 * i], d[2 * i + 1]
        person = dfirst[i] * 8 + int(x * 8)
        doctors[did] = {
            "doctor_id": did,
            "name": DOCTORS[person],
            "specialty": SPECIALTIES[int(y * 6)],
            "clinic_id": clinic_ids[i % N_CLINIC],
            "license_number": "GMC-" + str(100000 + (b + i * 30011) % 900000),
            "email": DOCTOR_EMAILS[person] + "@clinic.example",
        }
    d = u.take(3 * N_PATIENT)
    b = int(g[8] * 9000)
    for i in range(N_PATIENT):
        pid, x, y, z = patient_ids[i], d[3 * i], d[3 * i + 1], d[3 * i + 2]
        patients[pid] = {
            "patient_id": pid,
            "name": PATIENTS[pfirst[i] * 10 + int(x * 10)],
            "date_of_birth": BIRTHDAYS[int(y * _N_BIRTHDAYS)],
            "insurance_number": "NHI-" + str(i) + str(1000 + int(z * 9000)),
            "phone": "+44 7" + str(100 + (b + i * 139) % 900) + " " + str(100000 + (b * 11 + i * 45673) % 900000),
            "next_appointment": "",
        }
    d = u.take(3 * N_APPOINTMENT)
    off_p, off_d = int(g[9] * N_PATIENT), int(g[10] * N_DOCTOR)
    for i in range(N_APPOINTMENT):
        aid, x, y, z = appointment_ids[i], d[3 * i], d[3 * i + 1], d[3 * i + 2]
        pid = patient_ids[(off_p + i) % N_PATIENT]
        status = APPOINTMENT_STATUSES[0 if i % 4 else 1 + int(z * 2)]
        appointments[aid] = {
            "appointment_id": aid,
            "patient_id": pid,
            "doctor_id": doctor_ids[(off_d + 3 * i) % N_DOCTOR],
            "date": kit.DATES[int(x * 336)],
            "slot": SLOTS[int(y * 8)],
            "status": status,
            "checked_in": status == "completed" or i % 4 == 2,
        }
        patients[pid]["next_appointment"] = aid
    counters = kit.uniform_counters(UPDATES, g[11:14])
    tables = {"clinics": clinic_table, "doctors": doctors, "patients": patients, "appointments": appointments}
    return {**tables, "counters": counters}


DESCRIPTION = "Clinics, doctors, patients and appointments; look up, cancel, reschedule, check in."
DOMAIN = Domain("HealthcareAppointments", 0, DESCRIPTION, (CLINIC, DOCTOR, PATIENT, APPOINTMENT), UPDATES, world)
