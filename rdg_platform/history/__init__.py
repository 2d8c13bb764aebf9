"""Graph history: every graph record derived from the source archive, in Iceberg, read "as of T".

:mod:`~rdg_platform.history.tables` (layout, derivation, compaction, retention),
:mod:`~rdg_platform.history.reader` (as-of folds over the tables) and
:mod:`~rdg_platform.history.asof` (the API's choice between the live store and the history).
"""
