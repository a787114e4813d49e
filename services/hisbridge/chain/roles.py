"""What the chain does differently per deployment role, as one policy object the chain calls at fixed points
(so chain.py has no branch per role): how identity fields are encrypted, which quality rules run, whether a
record waits for or is refused by something beyond the mapping, who owns a business key, and whether a
batch's records may be finished together.

  HospitalRole  a hospital: the HIS holds plaintext, so SM4 is applied here and every catalog rule runs.
  CityRole      a city platform relaying its hospitals' uploads (with the identity mapping of
                chain.identity_mapping): identity fields arrive as ciphertext, so SM4 is skipped and the
                quality stage is the city's second check (chain.quality.cross_hospital: the catalog rules
                needing no plaintext, the organisation on the city's list); the first hospital to upload a
                key owns it (`owners`, a str → str mapping the wiring keeps, e.g. a reference-store space; a
                later upload of it by another hospital is duplicate_key_across_hospitals); each hospital's
                batch D must be complete by D 22:00 — its completion mark (the identity mapping's lookup
                `batch_done`) is waited for like any reference row, a later mark is hospital_batch_late.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Mapping, MutableMapping, Protocol

from hisbridge.catalog.model import Table
from hisbridge.chain.batch import BatchError, assign_batch
from hisbridge.chain.crypto import Sm4Key, Sm4Settings, encrypt_fields
from hisbridge.chain.mapping import Lookups, MissingLookup, lookup_key
from hisbridge.chain.quality import check_record
from hisbridge.chain.quality.cross_hospital import (HospitalList, deadline_of, duplicate_key, late_hospitals,
                                                    load_hospital_list, unlisted_organisation, without_plaintext)
from hisbridge.clock import SHANGHAI, as_shanghai
from hisbridge.contract import business_key

if TYPE_CHECKING:
    from hisbridge.settings import Settings


class Role(Protocol):
    # records of one table may take the chain's batch path (chain._finish_many): every catalog rule proved
    # column-wise, SM4 over the batch, no key claims — exactly what encrypt, quality and claim give record by
    # record for a role that sets it (the byte-for-byte equality tests of the two paths hold it to that)
    finish_together: bool

    def encrypt(self, table: Table, record: Mapping[str, Any], key: Sm4Key, settings: Sm4Settings) -> dict[str, Any]:
        ...

    def quality(self, table: Table, record: dict[str, Any], report_time: datetime | None) -> list[Any]:
        ...

    def admit(self, table: Table, record: Mapping[str, Any], lookups: Lookups) -> list[Any] | MissingLookup:
        """Reasons found before finishing ([] none), or the reference row the record must wait for."""
        ...

    def claim(self, table: Table, record: Mapping[str, Any], clean: bool) -> list[dict[str, Any]]:
        """Reasons the record's business key is not its organisation's to send ([] it is)."""
        ...


@dataclass(frozen=True)
class HospitalRole:
    finish_together: bool = True

    def encrypt(self, table: Table, record: Mapping[str, Any], key: Sm4Key, settings: Sm4Settings) -> dict[str, Any]:
        return encrypt_fields(record, table.encrypted_fields, key, settings)

    def quality(self, table: Table, record: dict[str, Any], report_time: datetime | None) -> list[Any]:
        return check_record(table, record, report_time=report_time)

    def admit(self, table: Table, record: Mapping[str, Any], lookups: Lookups) -> list[Any] | MissingLookup:
        return []

    def claim(self, table: Table, record: Mapping[str, Any], clean: bool) -> list[dict[str, Any]]:
        return []


HOSPITAL = HospitalRole()


@dataclass(frozen=True, eq=False)
class CityRole:
    """The city's hospital list, who uploaded each (table, key) first, and the time of day by which each
    hospital's batch D must be complete (its mark in the lookup `done_lookup`)."""
    hospitals: HospitalList
    owners: MutableMapping[str, str]
    deadline: str = "22:00"
    done_lookup: str = "batch_done"
    # key claims and the second check run record by record, in commit order
    finish_together: bool = False

    def encrypt(self, table: Table, record: Mapping[str, Any], key: Sm4Key, settings: Sm4Settings) -> dict[str, Any]:
        return dict(record)       # uploaded with the identity fields encrypted already

    def quality(self, table: Table, record: dict[str, Any], report_time: datetime | None) -> list[Any]:
        return (without_plaintext(table, record, report_time=report_time)
                + unlisted_organisation(record, self.hospitals))

    def admit(self, table: Table, record: Mapping[str, Any], lookups: Lookups) -> list[Any] | MissingLookup:
        """[] on time (or a revocation, or no batch: its own reasons say why), [reason] late, MissingLookup
        while the hospital has not marked the batch complete."""
        if record.get("xgbz") == "1":
            return []
        try:
            batch = assign_batch(table, record).name
        except BatchError:
            return []
        org = str(record.get("yljgdm") or "")
        key = lookup_key([org, batch])
        mark = lookups.get(self.done_lookup, {}).get(key)
        if mark is None:
            return MissingLookup(table.name, self.done_lookup, key, dict(record))
        cutoff = deadline_of(date.fromisoformat(batch), self.deadline, SHANGHAI)
        return [r.as_dict() for r in late_hospitals({org: _moment(mark.get("completed_at"))}, [org], cutoff).values()]

    def claim(self, table: Table, record: Mapping[str, Any], clean: bool) -> list[dict[str, Any]]:
        """The first hospital to upload a (table, key) that passes the other checks owns it."""
        if record.get("xgbz") == "1":
            return []
        key = business_key(table.key, record)
        org = record.get("yljgdm")
        if key is None or not org:
            return []
        claim = f"{table.name}\x1f{key}"
        owner = self.owners.get(claim)
        if owner is None:
            if clean:
                self.owners[claim] = org
            return []
        if owner == org:
            return []
        return [duplicate_key(table.name, key, owner, self.hospitals).as_dict()]


def role_for(settings: "Settings", owners: MutableMapping[str, str]) -> Role:
    """The deployment's role (deployment.role); a city's keeps who uploaded each key first in `owners`
    (the worker: a space of its reference store, so every worker and a replay see the same owners)."""
    if settings.deployment.role != "city":
        return HOSPITAL
    d = settings.deployment
    return CityRole(load_hospital_list(d.city_hospitals), owners, d.city_deadline)


def _moment(value: Any) -> datetime | None:
    """A completion mark's time, aware: ISO text with Z or an offset, or a datetime; naive means the
    Asia/Shanghai wall clock (what decode makes of a source time)."""
    if value is None:
        return None
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None             # an unreadable mark counts as no mark: the batch is late, said so
    return as_shanghai(moment)
