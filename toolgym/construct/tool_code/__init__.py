"""Tool code of hand-written domains, kept as modules so ruff lints and formats it.

Each module here is the source text of one domain's tools (``flight_booking.py`` is FlightBooking's
``TOOL_SOURCE``), read with :mod:`importlib.resources` and compiled by :mod:`toolgym.sandbox`, never imported
for execution: it must stay within the sandbox policy (no underscore names, no classes, ``global`` only for
``state``), and it uses the sandbox's ``state`` global, which ``ruff.toml`` here declares as a builtin.
Importing a module here only defines its functions and constants. This is not ``toolgym/construct/domains``,
whose modules :func:`toolgym.construct.pipeline.find_domains` imports.
"""
