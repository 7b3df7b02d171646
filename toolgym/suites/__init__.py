"""Importers for external benchmark suites, one module per suite (e.g. :mod:`toolgym.suites.taubench`)."""
