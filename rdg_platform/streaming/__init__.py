"""Streaming: one Quix Streams processor per source topic, Cassandra sink apps, and their supervisor.

- :mod:`.processor`: decode -> filter/project -> enrich -> map -> dedup window -> graph topics.
- :mod:`.sink`: graph topics -> Cassandra (``CassandraSink``, a Quix ``BatchingSink``).
- :mod:`.dlq`: dead-letter queues (headers and producing).
- :mod:`.apps`: the registry of apps (``AppSpec``: names, consumer groups, partitions, metrics ports).
- :mod:`.runtime`: ``make_application`` (the Quix ``Application`` from the settings) and the plumbing
  both kinds of app share.
- :mod:`.supervisor`: ``AppSupervisor`` behind ``rdg apps up|down|status`` and the local launcher.
Submodules are imported lazily so the supervisor can be used without importing Quix Streams.
"""
