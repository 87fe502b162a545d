"""Persistence: tables, migrations, and the operations on accounts and uploads."""
