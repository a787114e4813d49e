"""Plausible Chinese people: names, resident ID numbers (GB 11643), phones and Guangdong addresses.

Every function takes the caller's random.Random so generation stays deterministic by seed.
"""
from __future__ import annotations

import random
from datetime import date

# Common surnames with rough relative frequencies (Guangdong leans to 陈 李 黄 张 梁 林 刘 吴).
SURNAMES: tuple[tuple[str, int], ...] = (
    ("陈", 110), ("李", 85), ("黄", 80), ("张", 60), ("梁", 50), ("林", 48), ("刘", 45), ("吴", 40),
    ("王", 38), ("何", 32), ("罗", 30), ("杨", 28), ("郑", 26), ("谢", 24), ("周", 22), ("邓", 22),
    ("冯", 18), ("曾", 18), ("叶", 16), ("蔡", 16), ("许", 14), ("钟", 14), ("赖", 12), ("朱", 12),
    ("卢", 12), ("彭", 10), ("潘", 10), ("郭", 10), ("苏", 9), ("麦", 8), ("欧阳", 3), ("司徒", 2),
)
_SURNAME_NAMES = [s for s, _ in SURNAMES]
_SURNAME_WEIGHTS = [w for _, w in SURNAMES]
MALE_CHARS = "伟强军磊洋勇杰涛斌明超辉华健俊峰浩宇文志国建平刚龙鹏家晓嘉子梓睿泽铭"
FEMALE_CHARS = "芳娜敏静丽艳娟霞婷雪慧莹琳颖洁玲燕萍红梅晓嘉子梓欣怡诗雨思佳"

# 县级行政区划代码 in Guangdong with their names (used for ID numbers and addresses).
AREAS: tuple[tuple[str, str], ...] = (
    ("440103", "广州市荔湾区"), ("440104", "广州市越秀区"), ("440105", "广州市海珠区"),
    ("440106", "广州市天河区"), ("440111", "广州市白云区"), ("440112", "广州市黄埔区"),
    ("440113", "广州市番禺区"), ("440114", "广州市花都区"), ("440303", "深圳市罗湖区"),
    ("440304", "深圳市福田区"), ("440305", "深圳市南山区"), ("440306", "深圳市宝安区"),
    ("440604", "佛山市禅城区"), ("440605", "佛山市南海区"), ("440606", "佛山市顺德区"),
    ("441900", "东莞市"), ("442000", "中山市"), ("440402", "珠海市香洲区"), ("445102", "潮州市湘桥区"),
    ("440507", "汕头市龙湖区"), ("441402", "梅州市梅江区"), ("440802", "湛江市赤坎区"),
)
STREETS = ("中山", "解放", "人民", "环市", "天河", "黄埔大道", "东风", "建设", "新港", "江南大道", "花城大道",
           "滨江", "沿江", "工业", "体育", "五羊", "龙口", "华强", "深南大道", "佛山大道")
ROAD_KINDS = ("路", "大道", "街", "东路", "西路", "中路", "北路")
WORK_UNITS = ("广州市第一中学", "南方电网", "广汽集团", "中国移动广东公司", "华为技术有限公司", "美的集团",
              "广州地铁集团", "中山大学", "越秀区人民政府", "个体", "无", "白云机场", "腾讯科技", "珠江啤酒")

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"


def id_check_char(first17: str) -> str:
    """GB 11643 check character of the first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS))
    return ID_CHECK_CHARS[total % 11]


def id_number_is_valid(id_no: str | None) -> bool:
    """Checksum, digits and an existing birth date: what a quality rule checks on a resident ID."""
    if not id_no or len(id_no) != 18 or not id_no[:17].isdigit():
        return False
    try:
        date(int(id_no[6:10]), int(id_no[10:12]), int(id_no[12:14]))
    except ValueError:
        return False
    return id_no[17].upper() == id_check_char(id_no[:17])


def resident_id(rng: random.Random, area: str, birth: date, male: bool) -> str:
    """An 18-character resident ID consistent with area, birth date and sex (digit 17 odd = male)."""
    order = rng.randrange(0, 50) * 2 + (1 if male else 0)   # sequence 000–999 with the sex parity
    first17 = f"{area}{birth:%Y%m%d}{rng.randrange(0, 10)}{order:02d}"
    return first17 + id_check_char(first17)


def chinese_name(rng: random.Random, male: bool) -> str:
    surname = rng.choices(_SURNAME_NAMES, _SURNAME_WEIGHTS)[0]
    chars = MALE_CHARS if male else FEMALE_CHARS
    given = rng.choice(chars) + (rng.choice(chars) if rng.random() < 0.8 else "")
    return surname + given


def mobile(rng: random.Random) -> str:
    return f"1{rng.choice('3456789')}{rng.randrange(0, 10**9):09d}"


def landline(rng: random.Random) -> str:
    return f"020-{rng.randrange(2, 9)}{rng.randrange(0, 10**7):07d}"


def address(rng: random.Random, area_name: str) -> str:
    return (f"广东省{area_name}{rng.choice(STREETS)}{rng.choice(ROAD_KINDS)}{rng.randrange(1, 999)}号"
            f"{rng.randrange(1, 30)}栋{rng.randrange(1, 33)}{rng.randrange(1, 9):02d}房")


def work_unit(rng: random.Random) -> str:
    return rng.choice(WORK_UNITS)
