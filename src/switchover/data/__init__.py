"""Databases by URL, aggregate checks, row diff, backfill, CDC (PostgreSQL, MySQL/MariaDB, SQLite)."""
