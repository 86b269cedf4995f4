"""Storage adapter: acidic's tables on PostgreSQL, SQLite and MySQL/MariaDB."""

from ._store import EventRow, RunRow, Store

__all__ = ["EventRow", "RunRow", "Store"]
