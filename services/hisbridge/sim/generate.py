"""Deterministic activity of the simulated hospital: pure functions from (seed, scale, window) to rows.

Model. Every clinical *entity* (an outpatient visit, an inpatient stay) is a pure function of
(seed, start day, sequence number): its own random.Random draws first its timeline, then its content.
An entity produces timed *events* (insert / update of HIS rows, "ensure" = insert-if-absent for master
data). Activity for a time window is every event of every entity that falls in it, so consecutive windows
partition the history: simulating day D then D+1 equals simulating both at once. An entity whose earlier
events lie before the window gets "ensure" events (its rows as of the window start) so a window can be
loaded into an empty database and every later update still finds its row.

Day D's entities start in W(D) = [D-1 18:00, D 18:00) local time — the batch interval of the notice.
Sequence 0 starts at D 17:59:59.999999 and sequence 1 at D-1 18:00:00.000000 (the boundary rows);
inpatient stays 0–3 put discharge and archive times on the same boundaries.

Bad data: entity `seq` is bad when floor((seq+1)·share) > floor(seq·share), which makes exactly
floor(n·share) of n entities bad, spread evenly, independent of the window. A bad entity carries exactly
one defect (reason + table + column + value) recorded in the manifest, so tests can predict exactly what
must be delivered and what must be quarantined.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from hisbridge.sim import codes, people

Row = dict[str, Any]
US = timedelta(microseconds=1)
BATCH_HOUR = 18
MAX_INPATIENT_SPAN_DAYS = 45     # admission → archive at most 30 + 10 days (+ margin)
INPATIENTS_PER_VISITS = 25       # one admission per 25 outpatient visits

PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "dept_dict": ("dept_code",), "staff_dict": ("staff_code",), "pat_master": ("patient_id",),
    "op_register": ("reg_id",), "op_visit": ("visit_id",), "op_diagnosis": ("visit_id", "seq"),
    "ip_admission": ("inpatient_no",), "mr_homepage": ("inpatient_no",),
    "mr_diagnosis": ("inpatient_no", "seq"), "mr_operation": ("inpatient_no", "seq"),
    "mr_homepage_tcm": ("inpatient_no",), "eval_indicator": ("period", "indicator_code"),
}

# Reasons the transform is expected to give (quality/transcode vocabulary shared with the manifest).
UNMAPPED_CODE = "unmapped_code"
INVALID_ID_NUMBER = "invalid_id_number"
MISSING_REQUIRED = "missing_required"


@dataclass(frozen=True)
class Event:
    at: datetime            # simulated local wall-clock moment of the change
    table: str
    op: str                 # "ensure" (insert if absent) | "insert" | "update" (row = key + changed columns)
    row: Row


@dataclass(frozen=True)
class Defect:
    reason: str
    table: str
    key: tuple
    column: str
    value: Any


@dataclass
class Entity:
    kind: str               # "outpatient" | "inpatient"
    key: str                # reg_id or inpatient_no
    facts: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    defects: list[Defect] = field(default_factory=list)   # empty = clean; else one fault (maybe in 2 tables)


@dataclass(frozen=True)
class Activity:
    start: datetime
    end: datetime
    events: list[Event]
    manifest: dict[str, Any]

    def rows(self) -> dict[str, list[Row]]:
        """Final state per table after applying the events (plain rows, as the HIS would hold them)."""
        return final_rows(self.events)


# --- time helpers -----------------------------------------------------------------------------------

def batch_window(day: date) -> tuple[datetime, datetime]:
    """[D-1 18:00, D 18:00) local: the interval whose activity is reported on day D."""
    end = datetime.combine(day, time(BATCH_HOUR))
    return end - timedelta(days=1), end


# Relative activity per hour of the window, starting at 18:00 (evening and night: emergencies only).
_HOUR_WEIGHTS = (3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 6, 12, 14, 13, 10, 4, 8, 11, 10, 7)


def _moment_in_window(rng: random.Random, start: datetime) -> datetime:
    hour = rng.choices(range(24), _HOUR_WEIGHTS)[0]
    return start + timedelta(hours=hour, microseconds=rng.randrange(3600 * 10**6))


def _working_moment(rng: random.Random, day: date) -> datetime:
    return datetime.combine(day, time(9)) + timedelta(microseconds=rng.randrange(8 * 3600 * 10**6))


def is_bad(seq: int, share: float) -> bool:
    """Exactly floor(n·share) of sequences 0..n-1 are bad, evenly spread; boundary rows 0–3 never."""
    return seq >= 4 and math.floor((seq + 1) * share) > math.floor(seq * share)


def _money(rng: random.Random, low: float, high: float) -> Decimal:
    return Decimal(rng.randrange(int(low * 100), int(high * 100) + 1)) / 100


def _seed_rng(seed: int, *parts: object) -> random.Random:
    return random.Random("|".join(map(str, (seed, *parts))))


# --- dictionaries -------------------------------------------------------------------------------------

DICTIONARY_TIME = datetime(2020, 1, 1, 8, 0)


def staff_code(dept: str, k: int) -> str:
    return f"{dept}{k:02d}"


def dictionary_rows(seed: int) -> dict[str, list[Row]]:
    """dept_dict and staff_dict: 6 doctors (k 0–5) and 4 nurses (k 6–9) per department, 3 coders."""
    rng = _seed_rng(seed, "staff")
    depts = [{"dept_code": c, "dept_name": n, "dept_kind": k, "is_active": "Y", "updated_at": DICTIONARY_TIME}
             for c, n, k, _ in codes.DEPARTMENTS]
    titles = ("ZR", "FZR", "ZZ", "ZZ", "ZYS", "ZYS", "HS", "HS", "HS", "HS")
    staff = []
    for dept_code, *_ in codes.DEPARTMENTS:
        for k, title in enumerate(titles):
            male = rng.random() < (0.55 if title != "HS" else 0.1)
            staff.append({"staff_code": staff_code(dept_code, k), "staff_name": people.chinese_name(rng, male),
                          "dept_code": dept_code, "title_code": title,
                          "staff_kind": "NUR" if title == "HS" else "DOC", "updated_at": DICTIONARY_TIME})
    for k in range(3):
        staff.append({"staff_code": staff_code("9000", k), "staff_name": people.chinese_name(rng, False),
                      "dept_code": "9000", "title_code": "ZYS", "staff_kind": "COD", "updated_at": DICTIONARY_TIME})
    return {"dept_dict": depts, "staff_dict": staff}


# --- patients -------------------------------------------------------------------------------------------

LEGACY_PATIENTS = 2_000_000     # patients registered before the simulation starts ("returning")


def new_patient_id(day: date, kind: str, seq: int) -> str:
    return f"{day:%y%m%d}{'1' if kind == 'outpatient' else '2'}{seq:06d}"


def legacy_patient_id(k: int) -> str:
    return f"000000{k:07d}"


def patient_row(seed: int, patient_id: str, created_at: datetime | None = None) -> Row:
    """The master row of a patient: a pure function of (seed, patient_id) apart from created_at."""
    rng = _seed_rng(seed, "PAT", patient_id)
    male = rng.random() < 0.48
    area, area_name = rng.choice(people.AREAS)
    if created_at is None:  # legacy patient: registered some time in 2010–2019
        created_at = datetime(2010, 1, 1, 8) + timedelta(seconds=rng.randrange(10 * 365 * 86400))
    birth = created_at.date() - timedelta(days=rng.randrange(0, 90 * 365))
    adult = (created_at.date() - birth).days >= 18 * 365
    marital = rng.choices(["S", "M", "W", "D", "O"], [25, 60, 6, 6, 3])[0] if adult else "S"
    occupation = rng.choice(codes.mapped_codes("occupation")) if adult else "XS"
    contact_male = rng.random() < 0.5
    return {
        "patient_id": patient_id, "name": people.chinese_name(rng, male), "sex": "M" if male else "F",
        "birth_date": birth, "id_type": "SFZ", "id_no": people.resident_id(rng, area, birth, male),
        "nationality": "CHN", "nation": rng.choices(["HA", "ZH", "HU", "YA", "SH", "MA", "MI", "TJ"],
                                                     [93, 3, 1, 1, 1, 0.5, 0.3, 0.2])[0],
        "marital": marital, "occupation": occupation,
        "phone": people.mobile(rng) if rng.random() < 0.92 else people.landline(rng),
        "address": people.address(rng, area_name), "hukou_address": people.address(rng, area_name),
        "postcode": f"51{rng.randrange(0, 10000):04d}", "birth_place": f"广东省{area_name}",
        "native_place": "广东省", "work_unit": people.work_unit(rng) if adult else None,
        "work_phone": people.landline(rng) if adult and rng.random() < 0.5 else None,
        "contact_name": people.chinese_name(rng, contact_male),
        "contact_relation": rng.choice(codes.mapped_codes("contact_relation")),
        "contact_phone": people.mobile(rng), "contact_address": people.address(rng, area_name),
        "health_card_no": f"4401{rng.randrange(10**13):013d}" if rng.random() < 0.6 else None,
        "created_at": created_at, "updated_at": created_at,
    }


# Defects that can be planted in a patient row (column, bad value, reason).
def _patient_defects(row: Row) -> list[tuple[str, Any, str]]:
    broken_check = row["id_no"][:17] + ("0" if row["id_no"][17] != "0" else "1")
    bad_date = row["id_no"][:10] + "13" + row["id_no"][12:17]
    bad_date += people.id_check_char(bad_date)       # checksum valid, month 13
    return [("id_no", broken_check, INVALID_ID_NUMBER), ("id_no", bad_date, INVALID_ID_NUMBER),
            ("name", None, MISSING_REQUIRED), ("marital", "X", UNMAPPED_CODE),
            ("nation", "WZ", UNMAPPED_CODE), ("occupation", "SJET", UNMAPPED_CODE),
            ("contact_relation", "PY", UNMAPPED_CODE), ("id_type", "CSZ", UNMAPPED_CODE)]


def _plant(entity: Entity, rows: list[tuple[str, Row]], table: str, column: str, value: Any, reason: str,
           match: dict[str, Any] | None = None) -> None:
    """Overwrite one column in the entity's rows of `table` (optionally only rows matching `match`)."""
    for t, row in rows:
        if t == table and all(row.get(k) == v for k, v in (match or {}).items()):
            row[column] = value
            key = tuple(row[k] for k in PRIMARY_KEYS[table])
            entity.defects.append(Defect(reason, table, key, column, value))


# --- outpatient visits ------------------------------------------------------------------------------------

def _op_timeline(rng: random.Random, day: date, seq: int, bad: bool) -> dict[str, Any]:
    start, end = batch_window(day)
    reg = end - US if seq == 0 else start if seq == 1 else _moment_in_window(rng, start)
    emergency = reg.hour < 8 or reg.hour >= 18 or rng.random() < 0.08
    cancelled = not bad and seq > 1 and rng.random() < 0.04
    visit = reg + timedelta(minutes=rng.uniform(2, 30) if emergency else rng.uniform(5, 120))
    diag = visit + timedelta(minutes=rng.uniform(3, 20))
    t = {"reg_time": reg, "emergency": emergency, "cancelled": cancelled,
         "cancel_time": reg + timedelta(minutes=rng.uniform(5, 60)),
         "visit_time": None if cancelled else visit, "diag_time": None if cancelled else diag,
         "edit_time": diag + timedelta(minutes=rng.uniform(30, 180)) if rng.random() < 0.05 else None,
         # after 18:00 and never before the visit's own diagnosis (a visit late in the day)
         "late_time": max(end, diag) + timedelta(minutes=rng.uniform(0, 180))
         if reg < end - timedelta(hours=1) and rng.random() < 0.03 else None,
         "patient_edit_time": reg + timedelta(minutes=rng.uniform(10, 60)) if rng.random() < 0.03 else None}
    if cancelled:
        t["edit_time"] = t["late_time"] = None
    moments = [m for m in (reg, t["visit_time"], t["diag_time"], t["edit_time"], t["late_time"],
                           t["patient_edit_time"], t["cancel_time"] if cancelled else None) if m]
    t["first"], t["last"] = min(moments), max(moments)
    return t


def _op_defect_choices() -> list[tuple[str, str, Any, str]]:
    return [("op_register", "fee_type", "YDYB", UNMAPPED_CODE), ("op_register", "dept_code", "9901", UNMAPPED_CODE),
            ("op_register", "visit_type", "TJ", UNMAPPED_CODE), ("op_diagnosis", "icd_code", None, MISSING_REQUIRED)]


def outpatient_visit(seed: int, day: date, seq: int, bad_share: float,
                     window: tuple[datetime, datetime] | None = None) -> Entity | None:
    """One registration (and visit unless cancelled); None when it has no event inside `window`."""
    rng = _seed_rng(seed, "OP", day, seq)
    bad = is_bad(seq, bad_share)
    t = _op_timeline(rng, day, seq, bad)
    if window and (t["last"] < window[0] or t["first"] >= window[1]):
        return None
    defect_choice = rng.randrange(8 + 4) if bad else None       # 8 patient defects, 4 visit defects
    new_patient = bad and defect_choice < 8 or rng.random() < 0.4
    patient_id = new_patient_id(day, "outpatient", seq) if new_patient else legacy_patient_id(
        rng.randrange(LEGACY_PATIENTS))
    patient = patient_row(seed, patient_id, t["reg_time"] if new_patient else None)
    dept = codes.EMERGENCY_DEPARTMENT if t["emergency"] else rng.choices(
        *zip(*[(c, w) for c, _, k, w in codes.DEPARTMENTS if k in ("OP", "BOTH") and c != "9901"]))[0]
    doctor = staff_code(dept, rng.randrange(6))
    reg_id, visit_id = f"R{day:%y%m%d}{seq:06d}", f"V{day:%y%m%d}{seq:06d}"
    visit_type = "JZ" if t["emergency"] else rng.choices(["PT", "ZJ"], [4, 1])[0]
    fee_type = rng.choices(["ZGYB", "JMYB", "ZF", "SYBX", "GF", "QT"], [45, 30, 18, 3, 2, 2])[0]
    register = {"reg_id": reg_id, "patient_id": patient_id, "dept_code": dept, "doctor_code": doctor,
                "visit_type": visit_type, "reg_time": t["reg_time"], "fee_type": fee_type,
                "reg_fee": Decimal("50.00") if visit_type == "ZJ" else Decimal("10.00"), "status": "R",
                "cancel_time": None, "updated_at": t["reg_time"]}
    diag = rng.choice(codes.OP_DIAGNOSES)
    visit = {"visit_id": visit_id, "reg_id": reg_id, "patient_id": patient_id, "dept_code": dept,
             "doctor_code": doctor, "visit_time": t["visit_time"], "first_visit": "Y" if new_patient else "N",
             "chief_complaint": f"{diag[1]}相关症状{rng.randrange(1, 30)}天", "total_fee": _money(rng, 20, 800),
             "updated_at": t["visit_time"]}
    diagnoses = [{"visit_id": visit_id, "seq": 1, "diag_type": "1", "icd_code": diag[0], "icd_name": diag[1],
                  "diag_time": t["diag_time"], "doctor_code": doctor, "updated_at": t["diag_time"]}]
    if rng.random() < 0.4:
        other = rng.choice(codes.OP_DIAGNOSES)
        diagnoses.append({**diagnoses[0], "seq": 2, "diag_type": "2", "icd_code": other[0], "icd_name": other[1]})
    entity = Entity("outpatient", reg_id, {
        "reg_id": reg_id, "visit_id": None if t["cancelled"] else visit_id, "patient_id": patient_id,
        "reg_time": t["reg_time"], "visit_time": t["visit_time"], "cancelled": t["cancelled"],
        "edited": bool(t["edit_time"]), "late_time": t["late_time"], "new_patient": new_patient})
    planted = [("pat_master", patient), ("op_register", register), ("op_visit", visit)] + [
        ("op_diagnosis", d) for d in diagnoses]
    if bad:
        if defect_choice < 8:
            column, value, reason = _patient_defects(patient)[defect_choice]
            _plant(entity, planted, "pat_master", column, value, reason)
        else:
            table, column, value, reason = _op_defect_choices()[defect_choice - 8]
            _plant(entity, planted, table, column, value, reason, {"seq": 1} if table == "op_diagnosis" else None)
            if column == "dept_code":
                _plant(entity, planted, "op_visit", column, value, reason)
    entity.events = _op_events(rng, t, patient, register, visit, diagnoses)
    return entity


def _op_events(rng: random.Random, t: dict[str, Any], patient: Row, register: Row, visit: Row,
               diagnoses: list[Row]) -> list[Event]:
    reg, pk = t["reg_time"], {"reg_id": register["reg_id"]}
    events = [Event(reg, "pat_master", "ensure", patient), Event(reg, "op_register", "insert", register)]
    if t["patient_edit_time"] and patient["created_at"] == reg:      # only the day's new patients
        at = t["patient_edit_time"]
        events.append(Event(at, "pat_master", "update", {"patient_id": patient["patient_id"],
                                                         "phone": people.mobile(rng), "updated_at": at}))
    if t["cancelled"]:
        at = t["cancel_time"]
        return events + [Event(at, "op_register", "update", {**pk, "status": "C", "cancel_time": at, "updated_at": at})]
    at = t["visit_time"]
    events += [Event(at, "op_visit", "insert", visit),
               Event(at, "op_register", "update", {**pk, "status": "V", "updated_at": at})]
    events += [Event(t["diag_time"], "op_diagnosis", "insert", d) for d in diagnoses]
    if t["edit_time"] and diagnoses[0]["icd_code"] is not None:
        at, new = t["edit_time"], rng.choice(codes.OP_DIAGNOSES)
        events.append(Event(at, "op_diagnosis", "update", {"visit_id": visit["visit_id"], "seq": 1,
                                                           "icd_code": new[0], "icd_name": new[1], "updated_at": at}))
    if t["late_time"]:   # a late entry after 18:00 for an earlier visit: another diagnosis and the final fee
        at, late = t["late_time"], rng.choice(codes.OP_DIAGNOSES)
        events += [Event(at, "op_diagnosis", "insert", {**diagnoses[0], "seq": len(diagnoses) + 1, "diag_type": "2",
                                                        "icd_code": late[0], "icd_name": late[1],
                                                        "diag_time": at, "updated_at": at}),
                   Event(at, "op_visit", "update", {"visit_id": visit["visit_id"],
                                                    "total_fee": visit["total_fee"] + _money(rng, 5, 200),
                                                    "updated_at": at})]
    return events


# --- inpatient stays -------------------------------------------------------------------------------------

FEE_ITEMS = ("fee_general_service", "fee_general_treatment", "fee_nursing", "fee_other_service", "fee_pathology",
             "fee_lab", "fee_imaging", "fee_clinical_diag", "fee_nonsurgical", "fee_surgical", "fee_rehab",
             "fee_tcm_treatment", "fee_western_drug", "fee_chinese_patent", "fee_chinese_herbal", "fee_blood",
             "fee_albumin", "fee_globulin", "fee_coag_factor", "fee_cytokine", "fee_mat_exam",
             "fee_mat_treatment", "fee_mat_operation", "fee_other")
# Sub-items ("其中") are parts of a top-level item and not added to the total again.
FEE_SUB_ITEMS = {"fee_physio": "fee_nonsurgical", "fee_anesthesia": "fee_surgical",
                 "fee_operation": "fee_surgical", "fee_antibiotics": "fee_western_drug"}


def _ip_timeline(rng: random.Random, day: date, seq: int) -> dict[str, Any]:
    start, _ = batch_window(day)
    admit = _moment_in_window(rng, start)
    los = min(30, 1 + int(rng.expovariate(1 / 6)))
    out_day = day + timedelta(days=los)
    discharge = (datetime.combine(out_day, time(BATCH_HOUR)) - US if seq == 0 else
                 batch_window(out_day)[0] if seq == 1 else _working_moment(rng, out_day))
    homepage = discharge + timedelta(minutes=rng.uniform(60, 240))
    archive_day = out_day + timedelta(days=rng.randrange(2, 11))
    archive = (datetime.combine(archive_day, time(BATCH_HOUR)) - US if seq == 2 else
               batch_window(archive_day)[0] if seq == 3 else _working_moment(rng, archive_day))
    transfer = admit + timedelta(hours=rng.uniform(12, 36)) if rng.random() < 0.1 else None
    t = {"admit_time": admit, "discharge_time": discharge, "homepage_time": homepage, "archive_time": archive,
         "transfer_time": transfer if transfer and transfer < discharge else None,
         "coding_time": archive - timedelta(minutes=rng.uniform(30, 180)) if rng.random() < 0.1 else None}
    t["first"], t["last"] = admit, archive
    return t


def _ip_defect_choices() -> list[tuple[str, str, Any, str]]:
    return [("ip_admission", "admit_route", "ZJ", UNMAPPED_CODE), ("mr_homepage", "discharge_mode", "06", UNMAPPED_CODE),
            ("mr_homepage", "abo", "P", UNMAPPED_CODE), ("mr_homepage", "rh", "WK", UNMAPPED_CODE),
            ("mr_homepage", "pay_code", "YDYB", UNMAPPED_CODE),
            ("mr_diagnosis", "admit_condition", "D", UNMAPPED_CODE), ("mr_diagnosis", "icd_code", None, MISSING_REQUIRED)]


def inpatient_stay(seed: int, day: date, seq: int, bad_share: float,
                   window: tuple[datetime, datetime] | None = None) -> Entity | None:
    """Admission on day D, discharge days later, front page, archiving; None when outside `window`."""
    rng = _seed_rng(seed, "IP", day, seq)
    t = _ip_timeline(rng, day, seq)
    if window and (t["last"] < window[0] or t["first"] >= window[1]):
        return None
    bad = is_bad(seq, bad_share)
    defect_choice = rng.randrange(8 + 7) if bad else None
    new_patient = bad and defect_choice < 8 or rng.random() < 0.4
    patient_id = new_patient_id(day, "inpatient", seq) if new_patient else legacy_patient_id(
        rng.randrange(LEGACY_PATIENTS))
    patient = patient_row(seed, patient_id, t["admit_time"] if new_patient else None)
    inpatient_no = f"ZY{day:%y%m%d}{seq:04d}"
    rows = _ip_rows(rng, t, patient, inpatient_no, new_patient)
    entity = Entity("inpatient", inpatient_no, {
        "inpatient_no": inpatient_no, "patient_id": patient_id, "admit_time": t["admit_time"],
        "discharge_time": t["discharge_time"], "archive_time": t["archive_time"],
        "tcm": any(tb == "mr_homepage_tcm" for tb, _ in rows), "new_patient": new_patient})
    planted = [("pat_master", patient)] + rows
    if bad:
        if defect_choice < 8:
            column, value, reason = _patient_defects(patient)[defect_choice]
            _plant(entity, planted, "pat_master", column, value, reason)
        else:
            table, column, value, reason = _ip_defect_choices()[defect_choice - 8]
            _plant(entity, planted, table, column, value, reason, {"seq": 0} if table == "mr_diagnosis" else None)
            if column == "admit_route":     # the front page copies the admission's route
                _plant(entity, planted, "mr_homepage", column, value, reason)
            if column == "discharge_mode":  # the discharge event copies the front page's mode
                entity.defects.append(Defect(reason, "ip_admission", (inpatient_no,), column, value))
            if column == "pay_code":
                _plant(entity, planted, "ip_admission", "fee_type", value, reason)
    entity.events = _ip_events(rng, t, patient, rows)
    return entity


def _ip_rows(rng: random.Random, t: dict[str, Any], patient: Row, inpatient_no: str,
             new_patient: bool) -> list[tuple[str, Row]]:
    dept = rng.choices(*zip(*[(c, max(w, 1)) for c, _, k, w in codes.DEPARTMENTS if k in ("IP", "BOTH")]))[0]
    dept_name = next(n for c, n, *_ in codes.DEPARTMENTS if c == dept)
    admit, discharge = t["admit_time"], t["discharge_time"]
    emergency = admit.hour < 8 or admit.hour >= 18
    route = "JZ" if emergency else rng.choices(["MZ", "ZR", "QT"], [90, 8, 2])[0]
    fee_type = rng.choices(["ZGYB", "JMYB", "XNH", "ZF", "SYBX", "GF", "PKJZ"], [45, 30, 5, 12, 4, 2, 2])[0]
    mode = rng.choices(["01", "02", "03", "04", "05", "99"], [90, 3, 2, 3, 1, 1])[0]
    principal = rng.choice(codes.IP_DIAGNOSES)
    ward, bed = f"{dept_name}病区", f"{rng.randrange(1, 60):02d}"
    admission = {"inpatient_no": inpatient_no, "patient_id": patient["patient_id"], "mr_no": "M" + patient["patient_id"],
                 "admit_times": 1 if new_patient else rng.randrange(2, 6), "admit_time": admit, "admit_dept": dept,
                 "admit_ward": ward, "bed_no": bed, "admit_route": route, "op_diag_code": principal[0],
                 "op_diag_name": principal[1], "attending_code": staff_code(dept, 2), "fee_type": fee_type,
                 "discharge_time": None, "discharge_dept": None, "discharge_ward": None, "discharge_mode": None,
                 "status": "I", "updated_at": admit}
    los = max(1, (discharge.date() - admit.date()).days)
    age_days = (admit.date() - patient["birth_date"]).days
    fees = {item: _money(rng, 0, 3000) if rng.random() < 0.6 else Decimal("0.00") for item in FEE_ITEMS}
    for sub, parent in FEE_SUB_ITEMS.items():
        fees[sub] = (fees[parent] * Decimal(rng.randrange(0, 60)) / 100).quantize(Decimal("0.01"))
    total = sum(fees[item] for item in FEE_ITEMS)
    hp_at = t["homepage_time"]
    homepage = {"inpatient_no": inpatient_no, "patient_id": patient["patient_id"], "mr_no": admission["mr_no"],
                "admit_times": admission["admit_times"], "pay_code": fee_type, "age_years": age_days // 365,
                "age_days": age_days if age_days < 365 else None, "newborn_birth_weight": None,
                "newborn_admit_weight": None, "admit_time": admit, "admit_dept": dept, "admit_ward": ward,
                "transfer_dept": None, "admit_route": route, "discharge_time": discharge, "discharge_dept": dept,
                "discharge_ward": ward, "los_days": los, "drug_allergy": rng.choices(["1", "2"], [9, 1])[0],
                "allergy_drugs": None, "autopsy": "2" if mode == "05" else None,
                "abo": rng.choices(["A", "B", "O", "AB", "UNK", "NT"], [28, 24, 40, 6, 1, 1])[0],
                "rh": rng.choices(["POS", "NEG", "NT"], [97, 1, 2])[0], "director_code": staff_code(dept, 0),
                "chief_code": staff_code(dept, 1), "attending_code": staff_code(dept, 2),
                "resident_code": staff_code(dept, 4), "nurse_code": staff_code(dept, 6), "coder_code": None,
                "quality": None, "qc_date": None, "discharge_mode": mode,
                "transfer_org": "广州市某社区卫生服务中心" if mode in ("02", "03") else None, "readmit_plan": "1",
                "readmit_purpose": None, "total_fee": total, "self_pay": (total * Decimal(rng.randrange(5, 40)) / 100
                                                                          ).quantize(Decimal("0.01")),
                **fees, "archive_time": None, "updated_at": hp_at}
    if homepage["drug_allergy"] == "2":
        homepage["allergy_drugs"] = rng.choice(["青霉素", "头孢类", "磺胺类"])
    homepage.update(_pathology_and_external_cause(rng, principal[0], discharge))
    rows: list[tuple[str, Row]] = [("ip_admission", admission), ("mr_homepage", homepage)]
    diag_rows = [principal] + rng.sample(codes.IP_DIAGNOSES, rng.randrange(0, 4))
    for seq, (code, name) in enumerate(d for i, d in enumerate(diag_rows) if i == 0 or d != principal):
        rows.append(("mr_diagnosis", {"inpatient_no": inpatient_no, "seq": seq, "diag_type": "Z" if seq == 0 else "Q",
                                      "icd_code": code, "icd_name": name,
                                      "admit_condition": rng.choices(["Y", "W", "B", "N"], [80, 10, 5, 5])[0],
                                      "updated_at": hp_at}))
    for seq in range(rng.choices([0, 1, 2], [50, 40, 10])[0]):
        code, name, level = rng.choice(codes.OPERATIONS)
        rows.append(("mr_operation", {
            "inpatient_no": inpatient_no, "seq": seq, "op_code": code, "op_name": name,
            "op_time": admit + (discharge - admit) * rng.uniform(0.1, 0.7), "op_level": level,
            "surgeon_code": staff_code(dept, 1), "assistant1_code": staff_code(dept, 2),
            "assistant2_code": staff_code(dept, 4), "incision_class": rng.choice(list(codes.INCISION)),
            "healing_class": "J", "anesthesia_code": rng.choice(list(codes.ANESTHESIA)),
            "anesthetist_code": staff_code(dept, 3), "updated_at": hp_at}))
    if dept in codes.TCM_DEPARTMENTS:
        disease, syndrome = rng.choice(codes.TCM_DISEASES), rng.choice(codes.TCM_SYNDROMES)
        use_prep = rng.choice(["1", "2"])
        rows.append(("mr_homepage_tcm", {
            "inpatient_no": inpatient_no, "treat_category": rng.choice(["1.1", "2"]), "op_tcm_diag_code": disease[0],
            "op_tcm_diag_name": disease[1], "clinical_pathway": rng.choice(["1", "2", "3"]), "use_tcm_prep": use_prep,
            "use_tcm_device": rng.choice(["1", "2"]), "use_tcm_tech": "1", "syndrome_nursing": rng.choice(["1", "2"]),
            "main_disease_code": disease[0], "main_disease_name": disease[1], "main_disease_cond": "Y",
            "main_syndrome_code": syndrome[0], "main_syndrome_name": syndrome[1], "main_syndrome_cond": "Y",
            "fee_tcm_prep": _money(rng, 50, 2000) if use_prep == "1" else Decimal("0.00"), "updated_at": hp_at}))
    return rows


def is_neoplasm(icd10: str) -> bool:
    """C00–D48: the front page must carry the pathology diagnosis (病理诊断, M code, 病理号)."""
    return "C00" <= icd10[:3] <= "D48"


def is_injury(icd10: str) -> bool:
    """S00–T98: the front page must carry the external cause of injury or poisoning (损伤中毒外部原因)."""
    return icd10[:1] in ("S", "T")


def _pathology_and_external_cause(rng: random.Random, principal: str, discharge: datetime) -> Row:
    """The front page's 病理诊断 and 损伤中毒外部原因 columns, filled as the 2011 form requires."""
    row: Row = {"path_diag_name": None, "path_diag_code": None, "path_no": None,
                "ext_cause_name": None, "ext_cause_code": None}
    if is_neoplasm(principal):
        name, m_code = rng.choice(codes.PATHOLOGY[principal])
        row.update(path_diag_name=name, path_diag_code=m_code, path_no=f"BL{discharge:%y}{rng.randrange(10**5):05d}")
    if is_injury(principal):
        code, name = rng.choice(codes.EXTERNAL_CAUSES)
        row.update(ext_cause_name=name, ext_cause_code=code)
    return row


def _ip_events(rng: random.Random, t: dict[str, Any], patient: Row, rows: list[tuple[str, Row]]) -> list[Event]:
    admission = rows[0][1]
    pk = {"inpatient_no": admission["inpatient_no"]}
    events = [Event(t["admit_time"], "pat_master", "ensure", patient),
              Event(t["admit_time"], "ip_admission", "insert", admission)]
    if t["transfer_time"]:
        at = t["transfer_time"]
        events.append(Event(at, "ip_admission", "update", {**pk, "bed_no": f"{rng.randrange(60, 90)}", "updated_at": at}))
    at = t["discharge_time"]
    events.append(Event(at, "ip_admission", "update", {
        **pk, "discharge_time": at, "discharge_dept": admission["admit_dept"], "discharge_ward": admission["admit_ward"],
        "discharge_mode": rows[1][1]["discharge_mode"], "status": "O", "updated_at": at}))
    events += [Event(t["homepage_time"], table, "insert", row) for table, row in rows[1:]]
    if t["coding_time"]:   # the coder corrects a fee line before archiving
        at, extra = t["coding_time"], _money(rng, 1, 100)
        events.append(Event(at, "mr_homepage", "update", {**pk, "fee_other": rows[1][1]["fee_other"] + extra,
                                                          "total_fee": rows[1][1]["total_fee"] + extra,
                                                          "updated_at": at}))
    at = t["archive_time"]
    events.append(Event(at, "mr_homepage", "update", {**pk, "archive_time": at, "quality": "1", "qc_date": at.date(),
                                                      "coder_code": staff_code("9000", rng.randrange(3)),
                                                      "updated_at": at}))
    return events


# --- evaluation indicators ----------------------------------------------------------------------------------

# Monthly: 医疗服务能力与医院质量安全指标 (2.2.x, catalog ylfwnl); yearly: 资源配置与运行指标 (2.1.x, catalog
# zypzyx, year-end values); monthly per key specialty: 重点专业质量控制指标 (catalog zdzkzb).
MONTHLY_INDICATORS = (("2.2.0.1", "平均住院日", "天", 6, 9), ("2.2.1.1", "收治病种数量", "个", 900, 1300),
                      ("2.2.1.2", "住院术种数量", "个", 300, 500), ("2.2.1.7", "出院患者手术占比", "%", 30, 45),
                      ("2.2.1.9", "四级手术占比", "%", 15, 25), ("2.2.2.2", "住院患者总死亡率", "%", 0.3, 0.9),
                      ("2.2.2.4", "手术患者住院死亡率", "%", 0.05, 0.3))
YEARLY_INDICATORS = (("2.1.1.1", "核定床位数", "张", 800, 800), ("2.1.1.2", "实际开放床位数", "张", 800, 820),
                     ("2.1.1.3", "平均床位使用率", "%", 85, 98),
                     ("2.1.2.1", "卫生技术人员数与开放床位数比", "比", 1.3, 1.6),
                     ("2.1.2.2", "全院护士与开放床位数比", "比", 0.6, 0.8),
                     ("2.1.2.4", "医院感染管理专职人员数与开放床位数比", "比", 0.007, 0.01),
                     ("2.1.3.2.1", "重症医学科床位占比", "%", 2, 5), ("2.1.4.1", "住院收入占比", "%", 55, 70),
                     ("2.1.4.4", "万元收入能耗", "吨标煤", 0.03, 0.06),
                     ("2.1.4.5", "门诊患者次均医药费用增幅", "%", -3, 6))
KEY_SPECIALTIES = {"MZ": "麻醉专业", "ZZ": "重症医学专业", "JZ": "急诊专业", "GR": "医院感染管理专业",
                   "YY": "临床用药", "HL": "护理专业"}
KEY_SPECIALTY_INDICATORS = (("MZ", "MZ-01", "麻醉科医患比", "比", 0.8, 1.2),
                            ("MZ", "MZ-05", "择期手术麻醉前访视率", "%", 95, 100),
                            ("ZZ", "ZZ-01", "ICU患者收治率", "%", 1, 3),
                            ("JZ", "JZ-06", "急诊抢救室患者死亡率", "%", 0.5, 2),
                            ("GR", "GR-01", "医院感染发病（例次）率", "%", 0.5, 1.5),
                            ("YY", "YY-01", "门诊患者抗菌药物使用率", "%", 8, 15),
                            ("HL", "HL-01", "床护比", "比", 0.5, 0.7),
                            ("HL", "HL-06", "住院患者跌倒发生率", "‰", 0.02, 0.08))
# The statistics office enters last month's (January: also last year's) figures on the 11th: once the month's
# front pages are archived (archiving takes up to 10 days after discharge), still before the 15th deadline.
INDICATOR_DAY = 11

Figures = tuple[Decimal | None, Decimal | None, Decimal | None]     # value, numerator, denominator


def indicator_rows(seed: int, period: str, at: datetime, figures: dict[str, Figures] | None = None) -> list[Row]:
    """Evaluation indicators of a period: 'YYYY-MM' the monthly hospital-wide and key-specialty sets,
    'YYYY' the yearly set. Hospital-wide rows have no specialty. `figures` (code → value, numerator,
    denominator) gives the figures the office computed from the detail (sim.evaluation); every other
    indicator gets a plausible random value without numerator and denominator."""
    rng = _seed_rng(seed, "EVAL", period)
    figures = figures or {}
    if len(period) != 7:
        spec = [(None, *item) for item in YEARLY_INDICATORS]
    else:
        spec = [(None, *item) for item in MONTHLY_INDICATORS] + list(KEY_SPECIALTY_INDICATORS)
    rows = []
    for specialty, code, name, unit, low, high in spec:
        drawn = Decimal(str(round(rng.uniform(low, high), 4)))     # drawn always: the sequence stays the same
        value, numerator, denominator = figures.get(code, (drawn, None, None))
        rows.append({"period": period, "indicator_code": code, "indicator_name": name, "specialty_code": specialty,
                     "specialty_name": KEY_SPECIALTIES.get(specialty), "value": value, "numerator": numerator,
                     "denominator": denominator, "unit": unit, "updated_at": at})
    return rows


def evaluation_periods(today: date, since_month: str = "2022-01", since_year: str = "2022") -> list[str]:
    """Every evaluation period finished before `today`: months from since_month, years from since_year."""
    months, (y, m) = [], (int(since_month[:4]), int(since_month[5:7]))
    while date(y, m, 1) < today.replace(day=1):
        months.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return months + [str(year) for year in range(int(since_year), today.year)]


def evaluation_history(seed: int, today: date, since_month: str = "2022-01", since_year: str = "2022") -> list[Row]:
    """The evaluation rows of every period since 2022 the statistics office has entered by `today` (the
    back-fill's source), each entered on the INDICATOR_DAY after its period."""
    rows = []
    for period in evaluation_periods(today, since_month, since_year):
        after = date(int(period[:4]) + 1, 1, 1) if len(period) == 4 else \
            (date(int(period[:4]), int(period[5:7]), 28) + timedelta(days=4)).replace(day=1)
        rows += indicator_rows(seed, period, datetime.combine(after.replace(day=INDICATOR_DAY), time(10)))
    return rows


def _indicator_events(seed: int, start: datetime, end: datetime) -> list[Event]:
    events = []
    day = start.date()
    while day <= end.date():
        at = datetime.combine(day, time(10))
        if day.day == INDICATOR_DAY and start <= at < end:
            last_month = day.replace(day=1) - timedelta(days=1)
            periods = [f"{last_month:%Y-%m}"] + ([f"{last_month:%Y}"] if day.month == 1 else [])
            events += [Event(at, "eval_indicator", "ensure", row) for p in periods for row in indicator_rows(seed, p, at)]
        day += timedelta(days=1)
    return events


# --- windows -------------------------------------------------------------------------------------------------

def _cut(events: list[Event], start: datetime, end: datetime) -> list[Event]:
    """The entity's events inside [start, end), preceded by "ensure" events for rows made before start."""
    before: dict[tuple, Row] = {}
    inside = []
    for event in sorted(events, key=lambda e: e.at):
        if event.at >= end:
            continue
        if event.at >= start:
            inside.append(event)
            continue
        key = (event.table, tuple(event.row[k] for k in PRIMARY_KEYS[event.table]))
        if event.op == "update":
            before[key] = {**before[key], **event.row}
        else:
            before.setdefault(key, dict(event.row))
    if not inside:
        return []
    return [Event(start, key[0], "ensure", row) for key, row in before.items()] + inside


def activity(seed: int, start: datetime, end: datetime, visits_per_day: int, bad_share: float = 0.0) -> Activity:
    """Everything the hospital does in [start, end): events in time order and a manifest of entities."""
    if not 0 <= bad_share < 0.5:
        raise ValueError(f"bad_share must be in [0, 0.5), got {bad_share}")
    window = (start, end)
    entities: list[Entity] = []
    first_day, last_day = start.date(), end.date() + timedelta(days=1)
    for day in _days(first_day - timedelta(days=1), last_day):
        entities += filter(None, (outpatient_visit(seed, day, s, bad_share, window) for s in range(visits_per_day)))
    inpatients = max(4, visits_per_day // INPATIENTS_PER_VISITS)
    for day in _days(first_day - timedelta(days=MAX_INPATIENT_SPAN_DAYS), last_day):
        entities += filter(None, (inpatient_stay(seed, day, s, bad_share, window) for s in range(inpatients)))
    events = _indicator_events(seed, start, end)
    kept = []
    for entity in entities:
        cut = _cut(entity.events, start, end)
        if cut:
            events += cut
            kept.append(entity)
    events.sort(key=lambda e: e.at)   # stable: an entity's same-moment events keep their order
    return Activity(start, end, events, _manifest(seed, start, end, visits_per_day, bad_share, kept, events))


def day_activity(seed: int, day: date, visits_per_day: int, bad_share: float = 0.0) -> Activity:
    """Activity of the batch window of day D: [D-1 18:00, D 18:00)."""
    return activity(seed, *batch_window(day), visits_per_day, bad_share)


def _days(first: date, last: date):
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def _manifest(seed: int, start: datetime, end: datetime, visits: int, share: float, entities: list[Entity],
              events: list[Event]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for event in events:
        counts[f"{event.table}.{event.op}"] = counts.get(f"{event.table}.{event.op}", 0) + 1
    return {"seed": seed, "start": start, "end": end, "visits_per_day": visits, "bad_share": share,
            "event_counts": dict(sorted(counts.items())),
            "entities": [{"kind": e.kind, "key": e.key, **e.facts,
                          "defects": [vars(d) for d in e.defects]} for e in entities]}


def final_rows(events: list[Event]) -> dict[str, list[Row]]:
    """Apply events in order to empty tables (ensure = insert if absent) and return rows per table."""
    tables: dict[str, dict[tuple, Row]] = {}
    for event in events:
        table = tables.setdefault(event.table, {})
        key = tuple(event.row[k] for k in PRIMARY_KEYS[event.table])
        if event.op == "update":
            table[key] = {**table[key], **event.row}
        elif event.op == "insert" or key not in table:
            table[key] = dict(event.row)
    return {name: list(rows.values()) for name, rows in tables.items()}
