"""The SQL layer both database backends share: dialect, row mapping, filters and queries.

Query text lives here once; :mod:`memmesh.store.sqlite` and :mod:`memmesh.store.postgres`
keep only what truly differs (connections, transactions, full-text search, vectors).
"""
