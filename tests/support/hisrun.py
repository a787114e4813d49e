"""Rows of the simulated hospital's HIS (the demo mapping's tables) that a stack test inserts itself: ids
carry the run id, so tests sharing a HIS database never meet."""
from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal

DEPT, DOCTOR = "1001", "100100"             # in the simulator's dictionaries and the mapping's value maps
VALID_ID, BAD_ID = "11010519491231002X", "110105194912310021"   # GB 11643 worked example; wrong check char


def at(day: date, h: int, m: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, h, m, s, us)


class HisRun:
    """This run's HIS rows (ids carry the run id) and what the pipeline must make of them."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:8].upper()
        self.now = datetime(2026, 3, 2, 8, 0)

    def pid(self, n: str) -> str:
        return f"P{self.id}{n}"

    def vid(self, n: str) -> str:
        return f"V{self.id}{n}"

    def patient(self, n: str, **over) -> dict:
        row = dict(patient_id=self.pid(n), name=f"测试{n}", sex="F", birth_date=date(1949, 12, 31), id_type="SFZ",
                   id_no=VALID_ID, nationality="中国", nation="HA", phone="13800138000",
                   address=f"广州市越秀区{n}号", contact_name="李四", health_card_no=f"HC{self.id}{n}",
                   created_at=self.now, updated_at=self.now)
        return {**row, **over}

    def register(self, n: str, reg_time: datetime) -> dict:
        return dict(reg_id=f"R{self.id}{n}", patient_id=self.pid(n), dept_code=DEPT, doctor_code=DOCTOR,
                    visit_type="PT", reg_time=reg_time, fee_type="ZGYB", reg_fee=Decimal("10.00"), status="V",
                    updated_at=self.now)

    def visit(self, n: str, reg_time: datetime, fee: str = "123.45") -> dict:
        return dict(visit_id=self.vid(n), reg_id=f"R{self.id}{n}", patient_id=self.pid(n), dept_code=DEPT,
                    doctor_code=DOCTOR, visit_time=reg_time + timedelta(minutes=5), first_visit="Y",
                    chief_complaint="头痛3天", total_fee=Decimal(fee), updated_at=self.now)

    def diagnosis(self, n: str, reg_time: datetime) -> dict:
        return dict(visit_id=self.vid(n), seq=1, diag_type="1", icd_code="I10.x00x002", icd_name="高血压",
                    diag_time=reg_time + timedelta(minutes=10), doctor_code=DOCTOR, updated_at=self.now)


def insert(conn, table: str, row: dict) -> None:
    cols = list(row)
    with conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO his.{table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                    [row[c] for c in cols])


def execute(conn, statement: str, params: tuple) -> None:
    with conn, conn.cursor() as cur:
        cur.execute(statement, params)
