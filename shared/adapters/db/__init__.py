"""Trawl's PostgreSQL layer: pooled connections, migrations, the unit of work and repositories.

All SQL lives in this package; callers borrow a unit of work (`uow(pool)`) and use its
`jobs` repository for writes and `queries` for the API's listings.
"""

from shared.adapters.db.connection import ConnectionPool, DatabaseConfig, EntraDatabase, UrlDatabase, connect
from shared.adapters.db.migrate import migrate
from shared.adapters.db.unit_of_work import UnitOfWork, in_one_statement, in_transaction, is_connection_error, read, uow

__all__ = [
    "ConnectionPool",
    "DatabaseConfig",
    "EntraDatabase",
    "UnitOfWork",
    "UrlDatabase",
    "connect",
    "in_one_statement",
    "in_transaction",
    "is_connection_error",
    "migrate",
    "read",
    "uow",
]
