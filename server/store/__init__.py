"""The token store: its interface (protocol.py), the SQL and in-memory implementations, the
caches in front, migrations. Import the module you need; this package imports nothing."""
