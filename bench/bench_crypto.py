"""SM4 field encryption: the `cryptography` fast path vs pure-Python gmssl on the same values.

Run: .venv/bin/python bench/bench_crypto.py [records]
Each record has 10 identity fields of Chinese/ID/phone/address text (SM4/ECB/PKCS7/hex, and CBC).
"""
from __future__ import annotations

import random
import sys
import time

from gmssl import sm4 as gm
from hisbridge.chain.crypto import Sm4Settings, encrypt_fields, parse_key

FIELDS = ("xm", "sfzh", "dh", "xzz", "hkdz", "gzdw", "dwdh", "lxrxm", "lxrdz", "lxrdh")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英"
PLACES = ["广东省广州市越秀区中山二路", "广东省深圳市南山区科技园", "广东省佛山市禅城区汾江中路", "广东省东莞市莞城街道"]


def make_records(n: int, seed: int = 7) -> list[dict[str, str]]:
    rnd = random.Random(seed)
    name = lambda: rnd.choice(SURNAMES) + "".join(rnd.choice(GIVEN) for _ in range(rnd.randint(1, 2)))  # noqa: E731
    phone = lambda: "1" + str(rnd.randint(3, 9)) + "".join(str(rnd.randint(0, 9)) for _ in range(9))  # noqa: E731
    addr = lambda: f"{rnd.choice(PLACES)}{rnd.randint(1, 999)}号{rnd.randint(1, 30)}栋{rnd.randint(101, 2808)}房"  # noqa: E731
    return [{"xm": name(), "sfzh": f"4401{rnd.randint(10**13, 10**14 - 1)}", "dh": phone(), "xzz": addr(),
             "hkdz": addr(), "gzdw": rnd.choice(PLACES) + "某某有限公司", "dwdh": f"020-{rnd.randint(10**7, 10**8 - 1)}",
             "lxrxm": name(), "lxrdz": addr(), "lxrdh": phone()} for _ in range(n)]


def gmssl_fields(record, crypt, settings, iv):
    out = dict(record)
    for f in FIELDS:
        data = record[f].encode("utf-8")
        out[f] = (crypt.crypt_ecb(data) if settings.mode == "ecb" else crypt.crypt_cbc(iv, data)).hex()
    return out


def rate(label: str, fn, records) -> float:
    start = time.process_time()
    for record in records:
        fn(record)
    elapsed = time.process_time() - start
    values = len(records) * len(FIELDS)
    print(f"{label:<34} {values / elapsed:>12,.0f} values/s  {len(records) / elapsed:>10,.0f} records/s")
    return values / elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    key = parse_key("8f3a1c5e7b9d2f4a6c8e0b1d3f5a7c9e", "bench")  # throwaway bench key
    iv = bytes(range(16))
    records = make_records(n)
    slow = records[: max(200, n // 50)]  # gmssl is ~100x slower: a slice keeps the run short
    print(f"SM4 on {n} records x {len(FIELDS)} fields (gmssl on {len(slow)}), one core, process time")
    for settings in (Sm4Settings(), Sm4Settings(mode="cbc", iv=iv)):
        crypt = gm.CryptSM4()
        crypt.set_key(key.key, gm.SM4_ENCRYPT)
        assert encrypt_fields(slow[0], FIELDS, key, settings) == gmssl_fields(slow[0], crypt, settings, iv)
        fast = rate(f"cryptography {settings.mode.upper()}", lambda r: encrypt_fields(r, FIELDS, key, settings), records)
        gmr = rate(f"gmssl        {settings.mode.upper()}", lambda r: gmssl_fields(r, crypt, settings, iv), slow)
        print(f"  fast path / gmssl = {fast / gmr:,.0f}x")


if __name__ == "__main__":
    main()
