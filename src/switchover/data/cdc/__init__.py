"""Change data capture: PostgreSQL logical decoding, MySQL/MariaDB ROW binlog, SQLite triggers."""
