"""Vantage points: named places probes run from (source address, proxy, country)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import select

from takedown.errors import Conflict, InputError, NotFound
from takedown.store import audit
from takedown.store.db import Database
from takedown.store.schema import VantagePoint

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True, slots=True)
class Vantage:
    """A vantage point; ``in_country`` checks decide an item's state."""

    name: str
    country: str | None = None
    in_country: bool = True
    source_address: str | None = None
    proxy: str | None = None
    id: int | None = None


# Probes run from this machine when no vantage point is named; counted as in-country.
LOCAL = Vantage(name="local", in_country=True)


def validate(v: Vantage) -> Vantage:
    """Check the fields of ``v``; return it normalised (country upper-case)."""
    if not _NAME.match(v.name):
        raise InputError(f"bad vantage point name {v.name!r}", where="name")
    country = v.country.upper() if v.country else None
    if country is not None and not re.fullmatch(r"[A-Z]{2}", country):
        raise InputError(f"country must be two letters, got {v.country!r}", where="--country")
    if v.source_address is not None:
        try:
            ipaddress.ip_address(v.source_address)
        except ValueError:
            raise InputError(f"not an IP address: {v.source_address!r}", where="--source") from None
    if v.proxy is not None and not re.match(r"^https?://[^\s/]+", v.proxy):
        raise InputError(f"proxy must be http(s)://HOST:PORT, got {v.proxy!r}", where="--proxy")
    return Vantage(v.name, country, v.in_country, v.source_address, v.proxy, v.id)


def _from_row(row: VantagePoint) -> Vantage:
    return Vantage(
        row.name, row.country, bool(row.in_country), row.source_address, row.proxy, row.id
    )


def add_vantage(db: Database, vantage: Vantage, *, now: datetime, actor: str) -> Vantage:
    """Store a new vantage point (Conflict if the name exists)."""
    v = validate(vantage)
    with db.session() as session:
        if session.scalar(select(VantagePoint.id).where(VantagePoint.name == v.name)):
            raise Conflict(f"vantage point {v.name!r} exists", where="name")
        row = VantagePoint(
            name=v.name,
            country=v.country,
            in_country=v.in_country,
            source_address=v.source_address,
            proxy=v.proxy,
        )
        session.add(row)
        session.flush()
        payload = asdict(v) | {"id": row.id}
        audit.record(session, at=now, actor=actor, type="vantage.added", payload=payload)
        return _from_row(row)


def list_vantages(db: Database) -> list[Vantage]:
    with db.reading() as session:
        rows = session.scalars(select(VantagePoint).order_by(VantagePoint.name)).all()
        return [_from_row(r) for r in rows]


def get_vantage(db: Database, name: str | None) -> Vantage:
    """The vantage point named ``name``; None → LOCAL."""
    if name is None:
        return LOCAL
    with db.reading() as session:
        row = session.scalar(select(VantagePoint).where(VantagePoint.name == name))
        if row is None:
            raise NotFound(f"unknown vantage point {name!r}", where="--vantage")
        return _from_row(row)
