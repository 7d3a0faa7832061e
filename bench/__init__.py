"""The platform benchmark, ``uv run python -m bench`` (see bench/README.md); not a test.

Modules: ``run`` (flags, the order of the phases, main), ``config`` (phases, timeouts, targets),
``stack`` (PostgreSQL, the broker, every process by handle, each phase's database and topics),
``services`` (the services as subprocesses, by way of :mod:`loyalty_cli.processes`, the harness the
integration tests use too), ``load`` (orders, publishing, read load), ``measure`` (watchers, CPU,
metrics, percentiles), ``phases_points`` and ``phases_tiers`` (the phases), ``report`` (the JSON
record and the table). ``bare_app.py`` is the bare route the balance reads are compared with.
"""
