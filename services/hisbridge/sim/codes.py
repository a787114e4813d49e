"""The simulated hospital's local dictionaries: local code → local name.

The national counterparts are NOT here: they live in schemas/mapping/valuemaps/<domain>.csv, the hospital's
mapping configuration. `UNMAPPED` lists local codes the HIS uses but the value maps deliberately lack
(a new insurance type, a certificate the national set has no code for…): the generator only uses them
to make "unmapped code" bad rows, and a unit test keeps this file and the CSVs consistent.
"""
from __future__ import annotations

LOCAL: dict[str, dict[str, str]] = {
    "sex": {"M": "男", "F": "女", "U": "未知"},
    "marital": {"S": "未婚", "M": "已婚", "W": "丧偶", "D": "离婚", "O": "其他", "X": "同居"},
    "nation": {"HA": "汉族", "ZH": "壮族", "HU": "回族", "MA": "满族", "YA": "瑶族", "MI": "苗族",
               "TJ": "土家族", "SH": "畲族", "LI": "黎族", "DO": "侗族", "CX": "朝鲜族", "MG": "蒙古族",
               "WW": "外国血统", "QT": "其他", "WZ": "未知民族"},
    "id_type": {"SFZ": "居民身份证", "HKB": "居民户口簿", "HZ": "护照", "JGZ": "军官证",
                "GAT": "港澳居民来往内地通行证", "TWZ": "台湾居民来往内地通行证", "QT": "其他证件",
                "CSZ": "出生医学证明"},
    "occupation": {"GWY": "国家公务员", "ZYJS": "专业技术人员", "ZY": "职员", "QYGL": "企业管理人员",
                   "GR": "工人", "NM": "农民", "XS": "学生", "JR": "现役军人", "ZYZY": "自由职业者",
                   "GTJY": "个体经营者", "WY": "无业人员", "LTX": "退（离）休人员", "QT": "其他",
                   "SJET": "散居儿童"},
    "admit_route": {"MZ": "门诊", "JZ": "急诊", "ZR": "其他医疗机构转入", "QT": "其他", "ZJ": "自行入院"},
    "discharge_mode": {"01": "医嘱离院", "02": "医嘱转院", "03": "医嘱转社区/乡镇卫生院",
                       "04": "非医嘱离院", "05": "死亡", "99": "其他", "06": "自动出院（待定）"},
    "admit_condition": {"Y": "有", "W": "临床未确定", "B": "情况不明", "N": "无", "D": "待查"},
    "payment": {"ZGYB": "城镇职工基本医疗保险", "JMYB": "城乡居民基本医疗保险", "XNH": "新型农村合作医疗",
                "PKJZ": "贫困救助", "SYBX": "商业医疗保险", "GF": "全公费", "ZF": "全自费",
                "QTSB": "其他社会保险", "QT": "其他", "YDYB": "异地医保直接结算"},
    "abo": {"A": "A型", "B": "B型", "O": "O型", "AB": "AB型", "UNK": "不详", "NT": "未查", "P": "孟买型"},
    "rh": {"NEG": "阴性", "POS": "阳性", "UNK": "不详", "NT": "未查", "WK": "弱D"},
    "contact_relation": {"PO": "配偶", "EZ": "儿子", "NE": "女儿", "SZ": "孙子女/外孙子女", "FM": "父母",
                         "ZF": "祖父母/外祖父母", "XD": "兄弟姐妹", "QT": "其他", "PY": "朋友"},
    "patient_type": {"PT": "普通门诊", "ZJ": "专家门诊", "JZ": "急诊", "ZY": "住院", "TJ": "体检"},
}

UNMAPPED: dict[str, frozenset[str]] = {
    "marital": frozenset({"X"}),
    "nation": frozenset({"WZ", "QT", "WW"}),   # GB/T 3304 has no code for 其他 / 外国血统 (97/98 are
                                               # unverified extensions the catalog's value set leaves out)
    "id_type": frozenset({"CSZ"}),
    "occupation": frozenset({"SJET"}),
    "admit_route": frozenset({"ZJ"}),
    "discharge_mode": frozenset({"06"}),
    "admit_condition": frozenset({"D"}),
    "payment": frozenset({"YDYB"}),
    "abo": frozenset({"P"}),
    "rh": frozenset({"WK"}),
    "contact_relation": frozenset({"PY"}),
    "patient_type": frozenset({"TJ"}),
    "department": frozenset({"9901"}),
}

# The hospital's own department codes (4 digits, first two = 大科), name, 诊疗科目 (in the CSV), kind,
# and a relative outpatient volume. 9901 is a new department nobody has mapped yet.
DEPARTMENTS: tuple[tuple[str, str, str, int], ...] = (
    ("1001", "呼吸内科", "BOTH", 8), ("1002", "消化内科", "BOTH", 8), ("1003", "神经内科", "BOTH", 6),
    ("1004", "心血管内科", "BOTH", 8), ("1005", "内分泌科", "BOTH", 6), ("1006", "肾内科", "BOTH", 3),
    ("1007", "老年病科", "BOTH", 2), ("1101", "普通外科", "BOTH", 6), ("1102", "骨科", "BOTH", 6),
    ("1103", "泌尿外科", "BOTH", 3), ("1104", "神经外科", "BOTH", 2), ("1105", "胸外科", "BOTH", 2),
    ("1201", "妇科", "BOTH", 6), ("1202", "产科", "BOTH", 4), ("1301", "儿科", "BOTH", 8),
    ("1401", "眼科", "OP", 4), ("1402", "耳鼻咽喉科", "OP", 4), ("1403", "口腔科", "OP", 4),
    ("1501", "皮肤科", "OP", 4), ("1601", "肿瘤科", "BOTH", 3), ("1701", "急诊科", "EM", 6),
    ("1801", "康复医学科", "BOTH", 2), ("1901", "重症医学科", "IP", 0), ("2001", "中医科", "BOTH", 5),
    ("2002", "针灸推拿科", "BOTH", 2), ("9901", "健康管理中心", "OP", 1),
    ("9000", "病案统计室", "ADM", 0),   # non-clinical (coders): never reported, needs no 诊疗科目
)
TCM_DEPARTMENTS = frozenset({"2001", "2002"})
EMERGENCY_DEPARTMENT = "1701"

STAFF_TITLES = {"ZR": "主任医师", "FZR": "副主任医师", "ZZ": "主治医师", "ZYS": "住院医师", "HS": "护士"}

# Diagnoses and operations: ICD-10 国家临床版 2.0 / ICD-9-CM-3 国家临床版 3.0 codes with their dictionary
# names, exactly as in the shipped subsets schemas/valuesets/icd/*.subset.tsv (a unit test keeps them in step:
# the quality stage checks that a code is in the dictionary and that the name is the dictionary's name).
OP_DIAGNOSES: tuple[tuple[str, str], ...] = (
    ("J06.900", "急性上呼吸道感染"), ("J20.900", "急性支气管炎"), ("I10.x00x002", "高血压"),
    ("E11.900", "2型糖尿病"), ("K29.700", "胃炎"), ("K59.000", "便秘"),
    ("M54.500", "下背痛"), ("R51.x00", "头痛"), ("J45.900x001", "支气管哮喘"),
    ("N39.000", "泌尿道感染"), ("H10.900", "结膜炎"), ("L30.900", "皮炎"), ("K02.900", "龋病"),
    ("J02.900", "急性咽炎"), ("A09.900", "胃肠炎"), ("M17.900", "膝关节病"),
    ("E78.500", "高脂血症"), ("F41.900", "焦虑障碍"), ("N76.000", "急性阴道炎"), ("Z34.900", "正常妊娠监督"),
)
# Inpatient principal/other diagnoses.
IP_DIAGNOSES: tuple[tuple[str, str], ...] = (
    ("I21.401", "急性非ST段抬高型心肌梗死"), ("I63.900", "脑梗死"), ("J18.900", "肺炎"),
    ("K35.800", "急性阑尾炎"), ("K80.200", "胆囊结石不伴有胆囊炎"), ("S72.000", "股骨颈骨折"),
    ("C34.900", "肺恶性肿瘤"), ("C16.900", "胃恶性肿瘤"), ("O80.000", "头位顺产"),
    ("N20.000", "肾结石"), ("I50.900", "心力衰竭"), ("J44.100", "慢性阻塞性肺病伴有急性加重"),
    ("E11.900", "2型糖尿病"), ("I10.x00x002", "高血压"), ("D25.900", "子宫平滑肌瘤"),
    ("M51.202", "腰椎间盘突出"), ("S06.000", "脑震荡"), ("N18.500", "慢性肾脏病5期"),
)
# 损伤中毒外部原因 (ICD-10 V01–Y98), written on the front page when the principal diagnosis is S/T.
EXTERNAL_CAUSES: tuple[tuple[str, str], ...] = (("W19.x00", "跌倒"), ("V89.900", "交通事故"))
# 病理诊断 (name, ICD-O-3 morphology M code as 国家临床版 writes it) per neoplasm (C00–D48) principal diagnosis.
PATHOLOGY: dict[str, tuple[tuple[str, str], ...]] = {
    "C34.900": (("肺腺癌", "M81400/3"), ("肺鳞状细胞癌", "M80700/3")),
    "C16.900": (("胃腺癌", "M81400/3"), ("胃印戒细胞癌", "M84900/3")),
    "D25.900": (("子宫平滑肌瘤", "M88900/0"),),
}
OPERATIONS: tuple[tuple[str, str, str], ...] = (  # ICD-9-CM-3 临床版 3.0 code, name, 手术级别
    ("47.0100", "腹腔镜下阑尾切除术", "2"), ("51.2300", "腹腔镜下胆囊切除术", "3"),
    ("81.5100", "全髋关节置换", "4"), ("00.6600", "经皮冠状动脉腔内血管成形术[PTCA]", "4"),
    ("32.4100", "胸腔镜下肺叶切除术", "4"), ("43.7x00", "胃部分切除术伴胃空肠吻合术", "3"),
    ("74.1x00", "低位子宫下段剖宫产", "2"), ("68.4100", "腹腔镜下全子宫切除术", "3"),
    ("79.3500x001", "股骨骨折切开复位内固定术", "3"), ("80.5100", "椎间盘切除术", "3"),
    ("96.7201", "呼吸机治疗[大于等于96小时]", "1"), ("45.2300", "结肠镜检查", "1"),
)
TCM_DISEASES: tuple[tuple[str, str], ...] = (   # GB/T 15657-1995 (TCM95) disease codes
    ("BNG080", "中风病"), ("BNF010", "咳嗽病"), ("BNX090", "腰痛病"), ("BNP060", "胃脘痛"),
)
# Main syndromes in the GB/T 15657-2021 dotted style the catalog's tcm_code rule accepts (the demo's own
# codes: the official 2021 syndrome table is not in the repository).
TCM_SYNDROMES: tuple[tuple[str, str], ...] = (
    ("B04.03.02.01", "气虚血瘀证"), ("B05.02.03.02", "风痰阻络证"), ("B07.03.01.03", "肝肾亏虚证"),
    ("B06.01.04.02", "痰热壅肺证"),
)
ANESTHESIA = {"QM": "全身麻醉", "ZG": "椎管内麻醉", "JM": "局部麻醉", "SJ": "神经阻滞麻醉"}
INCISION = {"0": "0类切口", "1": "Ⅰ类切口", "2": "Ⅱ类切口", "3": "Ⅲ类切口"}
HEALING = {"J": "甲", "Y": "乙", "B": "丙", "Q": "其他"}


def mapped_codes(domain: str) -> list[str]:
    """Local codes of a domain that have a national counterpart (the ones good rows use)."""
    return [code for code in LOCAL[domain] if code not in UNMAPPED.get(domain, frozenset())]


def department_codes(kind: str) -> list[str]:
    """Mapped department codes usable for outpatient ('OP') or inpatient ('IP') work."""
    allowed = {"OP": {"OP", "BOTH"}, "IP": {"IP", "BOTH"}}[kind]
    return [c for c, _, k, _ in DEPARTMENTS if k in allowed and c not in UNMAPPED["department"]]
