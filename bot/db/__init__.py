"""The database: opening it, its drivers (SQLite, PostgreSQL), the store, and what proves an owner
alive.
"""
