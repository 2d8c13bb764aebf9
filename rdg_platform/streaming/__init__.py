"""Streaming: one Quix Streams processor per source topic, Cassandra sink apps, and their supervisor.

- :mod:`.processor`: decode -> filter/project -> enrich -> map -> dedup window -> graph topics.
- :mod:`.sink`: graph topics -> Cassandra (``CassandraSink``, a Quix ``BatchingSink``).
- :mod:`.apps`: the registry of apps (names, consumer groups, metrics ports).
- :mod:`.supervisor`: ``AppSupervisor`` behind ``rdg apps up|down|status`` and the Dagster launcher.
Submodules are imported lazily so the supervisor can be used without importing Quix Streams.
"""
