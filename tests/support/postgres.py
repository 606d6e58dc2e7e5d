"""The test PostgreSQL server's URLs in the form psycopg and libpq take them."""

from __future__ import annotations

from sqlalchemy import URL, make_url


def libpq_dsn(sqlalchemy_url: str | URL, database: str | None = None) -> str:
    """The same server as ``sqlalchemy_url`` in libpq form, pointed at ``database`` (default: the URL's own)."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)
