"""crypto stage: SM4 per GB/T 32907, cross-checked byte for byte against gmssl; key handling; CLI."""
from __future__ import annotations

import base64
from datetime import date, datetime
from decimal import Decimal

import pytest
from click.testing import CliRunner
from gmssl import sm4 as gm
from hisbridge.chain.crypto import (DEFAULT_SETTINGS, Sm4ConfigError,
                                    Sm4DecryptError, Sm4Key, Sm4Settings,
                                    decrypt_fields, decrypt_text,
                                    encrypt_blocks, encrypt_fields,
                                    encrypt_text, load_key, parse_key,
                                    sm4_settings)
from hisbridge.cli.crypto import cli
from hisbridge.settings import load_settings
from hypothesis import given, settings
from hypothesis import strategies as st

# A throwaway key for tests only (never a real deployment key).
TEST_KEY_HEX = "8f3a1c5e7b9d2f4a6c8e0b1d3f5a7c9e"
KEY = parse_key(TEST_KEY_HEX, "test")
IV = bytes.fromhex("00112233445566778899aabbccddeeff")
GB_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")

chinese = st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), max_size=40)
mixed = st.text(alphabet=st.one_of(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5),
                                   st.sampled_from("0123456789Xx-·（）() ,省市区路号")), max_size=60)
all_settings = [Sm4Settings(), Sm4Settings(encoding="base64"), Sm4Settings(uppercase=True),
                Sm4Settings(mode="cbc", iv=IV), Sm4Settings(mode="cbc", iv=IV, encoding="base64")]


def gmssl_encrypt(plain: str, key: bytes, s: Sm4Settings) -> str:
    crypt = gm.CryptSM4()
    crypt.set_key(key, gm.SM4_ENCRYPT)
    data = plain.encode("utf-8")
    raw = crypt.crypt_ecb(data) if s.mode == "ecb" else crypt.crypt_cbc(s.iv, data)
    if s.encoding == "base64":
        return base64.b64encode(raw).decode()
    return raw.hex().upper() if s.uppercase else raw.hex()


def test_gbt32907_single_block_vector():
    assert encrypt_blocks(GB_KEY, GB_KEY).hex() == "681edf34d206965e86b3e94f536e4246"


def test_gbt32907_million_iterations_vector():
    block = GB_KEY
    for _ in range(1_000_000):
        block = encrypt_blocks(GB_KEY, block)
    assert block.hex() == "595298c7c6fd271f0402f804c33d3f66"


@pytest.mark.parametrize("s", all_settings, ids=lambda s: f"{s.mode}-{s.encoding}-{'U' if s.uppercase else 'l'}")
@settings(max_examples=60, deadline=None)
@given(plain=mixed)
def test_fast_path_is_byte_identical_to_gmssl(s, plain):
    ours = encrypt_text(plain, KEY, s)
    assert ours == gmssl_encrypt(plain, KEY.key, s)
    assert decrypt_text(ours, KEY, s) == plain


@settings(max_examples=40, deadline=None)
@given(plain=chinese, key=st.binary(min_size=16, max_size=16), iv=st.binary(min_size=16, max_size=16))
def test_random_keys_and_ivs_match_gmssl(plain, key, iv):
    k = Sm4Key(key, "t")
    for s in (Sm4Settings(), Sm4Settings(mode="cbc", iv=iv)):
        assert encrypt_text(plain, k, s) == gmssl_encrypt(plain, key, s)


def test_defaults_are_ecb_pkcs7_lowercase_hex():
    s = Sm4Settings()
    assert (s.mode, s.padding, s.encoding, s.uppercase, s.iv) == ("ecb", "pkcs7", "hex", False, None)
    text = encrypt_text("张三", KEY)
    assert len(text) == 32 and text == text.lower() and int(text, 16) >= 0
    assert encrypt_text("", KEY) != "" and len(encrypt_text("0123456789abcdef", KEY)) == 64  # full pad block


def test_same_plaintext_same_ciphertext_in_ecb_but_iv_changes_cbc():
    assert encrypt_text("李四", KEY) == encrypt_text("李四", KEY)
    other_iv = Sm4Settings(mode="cbc", iv=bytes(16))
    assert encrypt_text("李四", KEY, Sm4Settings(mode="cbc", iv=IV)) != encrypt_text("李四", KEY, other_iv)


def test_uppercase_hex_decrypts_too():
    upper = encrypt_text("王五", KEY, Sm4Settings(uppercase=True))
    assert upper == upper.upper() and decrypt_text(upper, KEY) == "王五"


@pytest.mark.parametrize("kwargs, words", [
    ({"mode": "gcm"}, "mode"), ({"encoding": "b32"}, "encoding"), ({"padding": "zero"}, "padding"),
    ({"mode": "cbc"}, "IV"), ({"mode": "cbc", "iv": b"short"}, "IV"), ({"iv": IV}, "no IV"),
    ({"encoding": "base64", "uppercase": True}, "hex output only"),
])
def test_bad_settings_are_refused(kwargs, words):
    with pytest.raises(Sm4ConfigError, match=words):
        Sm4Settings(**kwargs)


def test_wrong_key_or_garbage_fails_cleanly():
    cipher = encrypt_text("赵六", KEY)
    other = parse_key("00" * 16, "test")
    with pytest.raises(Sm4DecryptError):
        decrypt_text(cipher, other)  # fixed key and text: the PKCS7 (or UTF-8) check fails deterministically
    with pytest.raises(Sm4DecryptError, match="not valid hex"):
        decrypt_text("zz", KEY)
    with pytest.raises(Sm4DecryptError, match="multiple of 16"):
        decrypt_text("abcd", KEY)


def test_encrypt_fields_encrypts_only_named_fields_and_keeps_none():
    record = {"name": "张三", "id_no": "11010519491231002X", "phone": None, "age": 76,
              "birth": date(1949, 12, 31), "seen": datetime(2026, 3, 1, 17, 59, 59, 999999),
              "fee": Decimal("12.30"), "dept": "03"}
    fields = ("name", "id_no", "phone", "age", "birth", "seen", "fee", "missing")
    out = encrypt_fields(record, fields, KEY)
    assert out["dept"] == "03" and out["phone"] is None and "missing" not in out
    assert record["name"] == "张三"  # input untouched
    assert all(out[f] != record[f] for f in ("name", "id_no", "age", "birth", "seen", "fee"))
    back = decrypt_fields(out, fields, KEY)
    assert back["name"] == "张三" and back["id_no"] == "11010519491231002X"
    assert back["age"] == "76" and back["birth"] == "1949-12-31"
    assert back["seen"] == "2026-03-01 17:59:59.999999" and back["fee"] == "12.30"


def sm4_of(**env: str):
    return load_settings(env).sm4


def test_load_key_from_env_and_file(tmp_path):
    key = load_key(sm4_of(HISBRIDGE_SM4_KEY=TEST_KEY_HEX.upper()))
    assert key.key == bytes.fromhex(TEST_KEY_HEX)
    assert key.version.startswith("sm3:") and len(key.version) == 12 and TEST_KEY_HEX[:8] not in key.version
    key_file = tmp_path / "sm4.key"
    key_file.write_text(TEST_KEY_HEX + "\n")
    from_file = load_key(sm4_of(HISBRIDGE_SM4_KEY_FILE=str(key_file), HISBRIDGE_SM4_KEY_VERSION="2026-03"))
    assert from_file.key == key.key and from_file.version == "2026-03"
    # an explicit file (the CLI's --key-file) wins over the settings' key
    assert load_key(sm4_of(HISBRIDGE_SM4_KEY="00" * 16), key_file=key_file).key == key.key


@pytest.mark.parametrize("text", ["abc", "g" * 32, TEST_KEY_HEX + "00", ""])
def test_bad_keys_are_refused_without_echoing_them(text):
    with pytest.raises(Sm4ConfigError) as info:
        load_key(sm4_of(HISBRIDGE_SM4_KEY=text))
    assert "HISBRIDGE_SM4_KEY" in str(info.value)
    if text:
        assert text not in str(info.value)


def test_key_repr_is_masked():
    shown = repr(KEY) + str(KEY) + f"{KEY}"
    assert TEST_KEY_HEX not in shown.lower() and "masked" in shown
    assert str(KEY.key) not in shown


def test_missing_key_file_is_a_clear_error(tmp_path):
    with pytest.raises(Sm4ConfigError, match="cannot read SM4 key file"):
        load_key(sm4_of(HISBRIDGE_SM4_KEY_FILE=str(tmp_path / "nope")))


# --- CLI ---------------------------------------------------------------------------------------------------

@pytest.fixture
def runner(monkeypatch):
    monkeypatch.setenv("HISBRIDGE_SM4_KEY", TEST_KEY_HEX)
    return CliRunner()


def test_cli_encrypt_then_decrypt_round_trips_lines(runner):
    lines = ["张三", "11010519491231002X", "", "广东省广州市越秀区中山二路1号"]
    enc = runner.invoke(cli, ["encrypt"], input="\n".join(lines) + "\n")
    assert enc.exit_code == 0, enc.output
    out = enc.stdout.splitlines()
    assert out == [encrypt_text(v, KEY) for v in lines]
    dec = runner.invoke(cli, ["decrypt"], input=enc.stdout)
    assert dec.exit_code == 0 and dec.stdout.splitlines() == lines


def test_cli_cbc_base64_uppercase_and_key_file(runner, tmp_path, monkeypatch):
    s = Sm4Settings(mode="cbc", iv=IV, encoding="base64")
    result = runner.invoke(cli, ["encrypt", "--mode", "cbc", "--iv", IV.hex(), "--encoding", "base64"], input="李四\n")
    assert result.stdout.strip() == gmssl_encrypt("李四", KEY.key, s)
    monkeypatch.delenv("HISBRIDGE_SM4_KEY")
    key_file = tmp_path / "k"
    key_file.write_text(TEST_KEY_HEX)
    upper = runner.invoke(cli, ["encrypt", "--uppercase", "--key-file", str(key_file)], input="李四\n")
    assert upper.exit_code == 0 and upper.stdout.strip() == gmssl_encrypt("李四", KEY.key, Sm4Settings(uppercase=True))


def test_cli_bad_line_goes_to_stderr_keeps_alignment_and_hides_key(runner):
    good = encrypt_text("张三", KEY)
    result = runner.invoke(cli, ["decrypt"], input=f"{good}\nnot-hex\n{good}\n")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["张三", "", "张三"]
    assert "line 2:" in result.stderr and TEST_KEY_HEX not in result.stderr + result.stdout


def test_cli_without_key_or_with_bad_iv_fails_clearly(monkeypatch):
    monkeypatch.setenv("HISBRIDGE_SM4_KEY", "too-short-secret")
    result = CliRunner().invoke(cli, ["encrypt"], input="x\n")
    assert result.exit_code != 0 and "32 hexadecimal" in result.output and "too-short-secret" not in result.output
    monkeypatch.setenv("HISBRIDGE_SM4_KEY", TEST_KEY_HEX)
    for args in (["encrypt", "--mode", "cbc"], ["encrypt", "--mode", "cbc", "--iv", "xyz"]):
        result = CliRunner().invoke(cli, args, input="x\n")
        assert result.exit_code == 2 and "IV" in result.output.upper()


def test_cli_is_registered_in_the_hisbridge_group():
    from hisbridge.cli import main
    assert "crypto" in main.commands and set(main.commands["crypto"].commands) == {"encrypt", "decrypt"}


def test_sm4_settings_come_from_the_settings_with_defaults():
    assert sm4_settings(load_settings({}).sm4) == DEFAULT_SETTINGS
    cbc = {"HISBRIDGE_SM4_MODE": "CBC", "HISBRIDGE_SM4_IV": "00" * 16, "HISBRIDGE_SM4_ENCODING": "base64"}
    assert sm4_settings(load_settings(cbc).sm4) == Sm4Settings(mode="cbc", iv=bytes(16), encoding="base64")
    for broken in ({**cbc, "HISBRIDGE_SM4_IV": ""}, {**cbc, "HISBRIDGE_SM4_IV": "zz"}):
        with pytest.raises(Sm4ConfigError):
            sm4_settings(load_settings(broken).sm4)
