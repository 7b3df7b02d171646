"""CalendarMeetings: people in teams, the teams' managers, meeting rooms and the meetings booked in them.

People confirm tentative meetings, cancel confirmed ones and move them to another time slot. Chains:
meeting -> organizer -> team -> manager, meeting -> room, person -> team -> manager. A team's manager belongs
to another team, so a chain never returns to the person it passed through.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolgym.construct import kit
from toolgym.construct.spec import Attr, Domain, Update

JOB_TITLES = ("engineer", "designer", "analyst", "product manager", "researcher")
TIMEZONES = ("UTC", "Europe/Berlin", "America/Chicago", "Asia/Tokyo")
TEAM_NAMES = ("Falcon", "Granite", "Harbor", "Juniper", "Meridian", "Polaris", "Saffron", "Tundra")
# Team of person i is TEAM_OF[(i + offset) % 10]: teams of 4, 3, 2 and 1 people (one team has a single member).
TEAM_OF = (0, 1, 0, 2, 1, 0, 3, 1, 2, 0)
ROOM_NAMES = ("Orion", "Lyra", "Vega", "Draco", "Cygnus", "Perseus", "Aquila", "Carina")
BUILDINGS = ("North", "South", "Annex")
TOPICS = (
    "Roadmap Review",
    "Budget Planning",
    "Hiring Sync",
    "Design Critique",
    "Incident Retro",
    "Launch Readiness",
    "Customer Feedback",
    "Security Audit",
    "Data Migration",
    "Quarterly Kickoff",
    "Vendor Selection",
    "Onboarding Plan",
)
SLOTS = ("09:00", "10:30", "13:00", "14:30", "16:00")
MEETING_STATUSES = ("tentative", "confirmed", "cancelled")
# Status of meeting i is STATUS_CYCLE[(i + offset) % 10]: 3 tentative, 5 confirmed, 2 cancelled.
STATUS_CYCLE = (1, 0, 1, 2, 1, 0, 1, 0, 2, 1)

PERSON = kit.entity(
    "person",
    "an employee with a calendar",
    "^PE[0-9]{4}$",
    Attr("name", "full name"),
    Attr("email", "email address"),
    Attr("job_title", "job title", answerable=False),
    Attr("team_id", "team", ref="team"),
    Attr("timezone", "time zone", answerable=False),
    table="people",
)
TEAM = kit.entity(
    "team",
    "a team of employees",
    "^TM[0-9]{4}$",
    Attr("name", "name"),
    Attr("manager_id", "manager", ref="person"),
    Attr("channel", "chat channel"),
    Attr("cost_center", "cost center"),
)
ROOM = kit.entity(
    "room",
    "a bookable meeting room",
    "^RM[0-9]{4}$",
    Attr("name", "name"),
    Attr("building", "building", answerable=False),
    Attr("floor", "floor", type="integer", answerable=False),
    Attr("capacity", "seating capacity", type="integer", answerable=False),
    Attr("video_code", "video conference code"),
)
MEETING = kit.entity(
    "meeting",
    "a meeting on the shared calendar",
    "^MT[0-9]{4}$",
    Attr("title", "title"),
    Attr("organizer_id", "organizer", ref="person"),
    Attr("room_id", "room", ref="room"),
    Attr("date", "date"),
    Attr("time_slot", "start time", answerable=False, enum=SLOTS),
    Attr("duration_min", "duration in minutes", type="integer", answerable=False),
    Attr("status", "status", answerable=False, enum=MEETING_STATUSES),
)
UPDATES = (
    Update(
        name="confirm_meeting",
        entity="meeting",
        description="Confirm a tentative meeting.",
        request="confirm {target}",
        confirmation_prefix="MC",
        sets={"status": "confirmed"},
        require={"status": "tentative"},
    ),
    Update(
        name="cancel_meeting",
        entity="meeting",
        description="Cancel a confirmed meeting and release its room.",
        request="cancel {target}",
        confirmation_prefix="MX",
        sets={"status": "cancelled"},
        require={"status": "confirmed"},
    ),
    Update(
        name="change_time_slot",
        entity="meeting",
        description="Move a confirmed meeting to another start time on the same day.",
        request="move {target} to the {value} slot",
        confirmation_prefix="TS",
        require={"status": "confirmed"},
        param=Attr("time_slot", "start time", answerable=False, enum=SLOTS),
    ),
)


def world(rng: np.random.Generator) -> dict[str, Any]:
    """10 people in 4 teams, 6 rooms, 10 meetings in June 2025 (one per day-bucket, so dates are unique)."""
    n_p, n_t, n_r, n_m = 10, 4, 6, 10
    r = kit.words(rng, 2 + n_p + n_t + n_r + n_m)
    g, c = r[0], r[1]
    team_off, team0, room0, topic0 = (g >> 10) % 10, (g >> 14) % 8, (g >> 17) % 8, (g >> 20) % 12
    org_off, room_off, status_off, bld0 = (g >> 24) % n_p, (g >> 28) % n_r, (g >> 31) % 10, (g >> 35) % 3

    team_ids = [kit.bucket_id("TM", k, r[2 + n_p + k], width=2250) for k in range(n_t)]
    people_tab = {}
    person_ids = []
    first_member = [""] * n_t
    for i, d, pid, name, email in kit.people("PE", r[2 : 2 + n_p], g):
        team = TEAM_OF[(team_off + i) % 10]
        person_ids.append(pid)
        if not first_member[team]:
            first_member[team] = pid
        people_tab[pid] = {
            "person_id": pid,
            "name": name,
            "email": f"{email}@corp.example",
            "job_title": JOB_TITLES[(d >> 10) % 5],
            "team_id": team_ids[team],
            "timezone": TIMEZONES[(d >> 13) % 4],
        }

    teams = {}
    for k in range(n_t):
        d = r[2 + n_p + k]
        tid = team_ids[k]
        name = TEAM_NAMES[(team0 + k) % 8]
        teams[tid] = {
            "team_id": tid,
            "name": name,
            "manager_id": first_member[(k + 1) % n_t],  # managed from outside: a member of the next team
            "channel": f"#team-{name.lower()}",
            "cost_center": f"CC-{kit.letters(d, 12, 3)}{k}",
        }

    rooms = {}
    room_ids = []
    for i in range(n_r):
        d = r[2 + n_p + n_t + i]
        rid = kit.bucket_id("RM", i, d)
        room_ids.append(rid)
        rooms[rid] = {
            "room_id": rid,
            "name": f"{ROOM_NAMES[(room0 + i) % 8]} Room",
            "building": BUILDINGS[(bld0 + i) % 3],
            "floor": 1 + (d >> 10) % 6,
            "capacity": (4, 6, 8, 12, 20)[(d >> 13) % 5],
            "video_code": f"VC-{kit.letters(d, 16, 4)}{i}",
        }

    meetings = {}
    for i in range(n_m):
        d = r[2 + n_p + n_t + n_r + i]
        mid = kit.bucket_id("MT", i, d)
        meetings[mid] = {
            "meeting_id": mid,
            "title": TOPICS[(topic0 + i) % 12],
            "organizer_id": person_ids[(org_off + 3 * i) % n_p],
            "room_id": room_ids[(room_off + i) % n_r],
            "date": f"2025-06-{1 + 3 * i + (d >> 10) % 3:02d}",
            "time_slot": SLOTS[(d >> 12) % 5],
            "duration_min": (30, 45, 60, 90)[(d >> 15) % 4],
            "status": MEETING_STATUSES[STATUS_CYCLE[(status_off + i) % 10]],
        }
    counters = kit.word_counters(UPDATES, c)
    return {"people": people_tab, "teams": teams, "rooms": rooms, "meetings": meetings, "counters": counters}


DESCRIPTION = "People, teams, rooms and meetings; look up, confirm, cancel, move to another time slot."
DOMAIN = Domain("CalendarMeetings", 0, DESCRIPTION, (PERSON, TEAM, ROOM, MEETING), UPDATES, world)
