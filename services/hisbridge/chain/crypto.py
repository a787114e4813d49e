"""Encrypt stage: SM4 (GB/T 32907-2016) encryption of identity fields.

Defaults — the form HIS/health code uses most often, and what the province is assumed to expect until it
says otherwise (no Guangdong rule was found, so every choice is configuration):
  SM4/ECB/PKCS7 (= PKCS5 for 16-byte blocks), key = 32 hex characters, UTF-8 plaintext,
  ciphertext as lowercase hex.
CBC needs an explicit 16-byte IV (there is no safe default); the IV is not prepended to the ciphertext.

Values that are not str are stringified before encryption: int/Decimal/float with str(), date as
YYYY-MM-DD, datetime as "YYYY-MM-DD HH:MM:SS[.ffffff]", bytes encrypted as they are; None stays None.

The key never appears in a message, a repr or a log line: errors name the variable or file, not the
value; `Sm4Key.version` is HISBRIDGE_SM4_KEY_VERSION or "sm3:" + the first 8 hex digits of SM3(key).

Fast path: `cryptography` (OpenSSL). One ECB context per key is reused for all values (ECB has no state
between whole blocks, and creating a context costs ~7 µs against ~0.5 µs per update); CBC chaining is
done over that ECB context block by block. `gmssl` is the independent cross-check used by the tests.
"""
from __future__ import annotations

import base64
import binascii
import os
import threading
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

if TYPE_CHECKING:
    from hisbridge import settings

BLOCK = 16


class Sm4ConfigError(ValueError):
    """Bad key or settings: an operator must act."""


class Sm4DecryptError(ValueError):
    """A ciphertext that does not decrypt under this key and settings."""


@dataclass(frozen=True, slots=True)
class Sm4Settings:
    mode: Literal["ecb", "cbc"] = "ecb"
    padding: Literal["pkcs7", "pkcs5"] = "pkcs7"
    encoding: Literal["hex", "base64"] = "hex"
    uppercase: bool = False          # hex only
    iv: bytes | None = None          # CBC only, 16 bytes

    def __post_init__(self) -> None:
        if self.mode not in ("ecb", "cbc"):
            raise Sm4ConfigError(f"SM4 mode must be 'ecb' or 'cbc', not {self.mode!r}")
        if self.padding not in ("pkcs7", "pkcs5"):
            raise Sm4ConfigError(f"SM4 padding must be 'pkcs7' (or its alias 'pkcs5'), not {self.padding!r}")
        if self.encoding not in ("hex", "base64"):
            raise Sm4ConfigError(f"SM4 output encoding must be 'hex' or 'base64', not {self.encoding!r}")
        if self.uppercase and self.encoding != "hex":
            raise Sm4ConfigError("uppercase applies to hex output only")
        if self.mode == "cbc" and (self.iv is None or len(self.iv) != BLOCK):
            raise Sm4ConfigError("SM4/CBC needs an IV of exactly 16 bytes (32 hex characters)")
        if self.mode == "ecb" and self.iv is not None:
            raise Sm4ConfigError("SM4/ECB takes no IV")


DEFAULT_SETTINGS = Sm4Settings()


@dataclass(frozen=True, slots=True)
class Sm4Key:
    key: bytes = field(repr=False)
    version: str

    def __post_init__(self) -> None:
        if len(self.key) != BLOCK:
            raise Sm4ConfigError("an SM4 key is 16 bytes (32 hex characters)")

    def __repr__(self) -> str:
        return f"Sm4Key(key=<masked>, version={self.version!r})"

    __str__ = __repr__


def key_fingerprint(key: bytes) -> str:
    """A short public name for a key (SM3 prefix): enough to tell keys apart, useless to recover one."""
    digest = hashes.Hash(hashes.SM3())
    digest.update(key)
    return "sm3:" + digest.finalize().hex()[:8]


def parse_key(text: str, source: str, version: str | None = None) -> Sm4Key:
    """32 hex characters → Sm4Key. `source` names where the text came from, for the error message."""
    text = text.strip()
    if len(text) != 2 * BLOCK:
        raise Sm4ConfigError(f"SM4 key from {source} must be 32 hexadecimal characters "
                             f"(found {len(text)} characters)")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise Sm4ConfigError(f"SM4 key from {source} must be 32 hexadecimal characters "
                             f"(found a non-hex character)") from None
    return Sm4Key(raw, version or key_fingerprint(raw))


def load_key(sm4: "settings.Sm4", key_file: str | os.PathLike[str] | None = None) -> Sm4Key:
    """The key from `key_file`, else the settings' key file (sm4.key_file), else their key (HISBRIDGE_SM4_KEY)."""
    version = sm4.key_version or None
    key_file = key_file if key_file is not None else sm4.key_file
    if key_file is not None:
        path = Path(key_file)
        try:
            text = path.read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise Sm4ConfigError(f"cannot read SM4 key file {path}: {exc.strerror}") from None
        return parse_key(text, f"key file {path}", version)
    if sm4.key is None:
        raise Sm4ConfigError("no SM4 key: set HISBRIDGE_SM4_KEY (32 hex characters) or HISBRIDGE_SM4_KEY_FILE")
    return parse_key(sm4.key.reveal(), "environment variable HISBRIDGE_SM4_KEY", version)


def sm4_settings(sm4: "settings.Sm4") -> Sm4Settings:
    """Mode, padding, output encoding, case and IV from the settings; bad values raise Sm4ConfigError at
    start-up (an operator must fix them)."""
    try:
        iv = bytes.fromhex(sm4.iv) if sm4.iv else None
    except ValueError:
        raise Sm4ConfigError("HISBRIDGE_SM4_IV must be 32 hexadecimal characters") from None
    return Sm4Settings(mode=sm4.mode, padding=sm4.padding, encoding=sm4.encoding,    # type: ignore[arg-type]
                       uppercase=sm4.uppercase, iv=iv)


# --- block cipher -----------------------------------------------------------------------------------------

class _EcbContexts(threading.local):
    """Per-thread cache of long-lived ECB contexts: an OpenSSL context must not be shared across threads."""

    def __init__(self) -> None:
        self.encryptors: dict[bytes, Any] = {}
        self.decryptors: dict[bytes, Any] = {}


_contexts = _EcbContexts()


def _ecb(key: bytes, encrypt: bool) -> Any:
    cache = _contexts.encryptors if encrypt else _contexts.decryptors
    ctx = cache.get(key)
    if ctx is None:
        cipher = Cipher(algorithms.SM4(key), modes.ECB())
        ctx = cipher.encryptor() if encrypt else cipher.decryptor()
        if len(cache) > 16:  # a handful of keys (rotation); never grows without bound
            cache.clear()
        cache[key] = ctx
    return ctx


def encrypt_blocks(key: bytes, data: bytes) -> bytes:
    """Raw SM4 on whole 16-byte blocks (ECB, no padding) — the primitive the GB/T 32907 vectors test."""
    if len(data) % BLOCK:
        raise ValueError("raw SM4 input must be a multiple of 16 bytes")
    return _ecb(key, True).update(data)


def decrypt_blocks(key: bytes, data: bytes) -> bytes:
    if len(data) % BLOCK:
        raise ValueError("raw SM4 input must be a multiple of 16 bytes")
    return _ecb(key, False).update(data)


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(BLOCK, "big")


def _pad(data: bytes) -> bytes:
    return data + _PADDING[len(data) % BLOCK]


_PADDING = tuple(bytes((BLOCK - r,)) * (BLOCK - r) for r in range(BLOCK))   # PKCS7, by length mod 16


def _unpad(data: bytes) -> bytes:
    n = data[-1] if data else 0
    if not 1 <= n <= BLOCK or data[-n:] != bytes((n,)) * n:
        raise Sm4DecryptError("bad PKCS7 padding: wrong key, mode or IV, or not an SM4 ciphertext")
    return data[:-n]


def encrypt_bytes(plain: bytes, key: Sm4Key, settings: Sm4Settings = DEFAULT_SETTINGS) -> bytes:
    padded = _pad(plain)
    ctx = _ecb(key.key, True)
    if settings.mode == "ecb":
        return ctx.update(padded)
    out, chain = [], settings.iv
    for i in range(0, len(padded), BLOCK):
        chain = ctx.update(_xor(padded[i:i + BLOCK], chain))
        out.append(chain)
    return b"".join(out)


def decrypt_bytes(cipher: bytes, key: Sm4Key, settings: Sm4Settings = DEFAULT_SETTINGS) -> bytes:
    if not cipher or len(cipher) % BLOCK:
        raise Sm4DecryptError(f"ciphertext length {len(cipher)} is not a positive multiple of 16 bytes")
    plain = _ecb(key.key, False).update(cipher)
    if settings.mode == "cbc":
        previous = settings.iv + cipher[:-BLOCK]
        plain = b"".join(_xor(plain[i:i + BLOCK], previous[i:i + BLOCK]) for i in range(0, len(plain), BLOCK))
    return _unpad(plain)


# --- text ------------------------------------------------------------------------------------------------

def _encode(data: bytes, settings: Sm4Settings) -> str:
    if settings.encoding == "base64":
        return base64.b64encode(data).decode("ascii")
    text = data.hex()
    return text.upper() if settings.uppercase else text


def _decode(text: str, settings: Sm4Settings) -> bytes:
    try:
        if settings.encoding == "base64":
            return base64.b64decode(text.strip(), validate=True)
        return bytes.fromhex(text.strip())
    except (ValueError, binascii.Error):
        raise Sm4DecryptError(f"ciphertext is not valid {settings.encoding}") from None


def encrypt_text(plain: str, key: Sm4Key, settings: Sm4Settings = DEFAULT_SETTINGS) -> str:
    return _encode(encrypt_bytes(plain.encode("utf-8"), key, settings), settings)


def decrypt_text(cipher: str, key: Sm4Key, settings: Sm4Settings = DEFAULT_SETTINGS) -> str:
    plain = decrypt_bytes(_decode(cipher, settings), key, settings)
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise Sm4DecryptError("decrypted bytes are not UTF-8: wrong key or settings") from None


def plain_bytes(value: Any) -> bytes:
    """The bytes that get encrypted for a non-None field value (see the module docstring)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, datetime):
        return value.isoformat(sep=" ").encode("utf-8")
    if isinstance(value, date):
        return value.isoformat().encode("utf-8")
    return str(value).encode("utf-8")


def encrypt_fields(record: Mapping[str, Any], fields: Iterable[str], key: Sm4Key,
                   settings: Sm4Settings = DEFAULT_SETTINGS) -> dict[str, Any]:
    """A copy of `record` with each of `fields` encrypted; absent fields stay absent, None stays None."""
    return encrypt_many([record], fields, key, settings)[0]


def encrypt_many(records: Sequence[Mapping[str, Any]], fields: Iterable[str], key: Sm4Key,
                 settings: Sm4Settings = DEFAULT_SETTINGS) -> list[dict[str, Any]]:
    """encrypt_fields for each record. ECB encrypts each block on its own, so every padded value of every
    record goes through OpenSSL in one call and is cut apart again: the same ciphertexts as value by
    value, for one call instead of one per value."""
    outs = [dict(r) for r in records]
    names = tuple(fields)
    if settings.mode != "ecb" or len(set(names)) != len(names):
        for out in outs:
            for name in names:
                value = out.get(name)
                if value is not None:
                    out[name] = _encode(encrypt_bytes(plain_bytes(value), key, settings), settings)
        return outs
    present = [(out, name, value.encode("utf-8") if type(value) is str else plain_bytes(value))
               for out in outs for name in names if (value := out.get(name)) is not None]
    if not present:
        return outs
    padded = [plain + _PADDING[len(plain) % BLOCK] for _, _, plain in present]
    cipher = _ecb(key.key, True).update(b"".join(padded))
    start = 0
    hex_text = settings.encoding != "base64"
    upper = hex_text and settings.uppercase
    for (out, name, _), block in zip(present, padded):
        end = start + len(block)
        if hex_text:     # _encode inlined for the common encodings (the same text)
            out[name] = cipher[start:end].hex().upper() if upper else cipher[start:end].hex()
        else:
            out[name] = _encode(cipher[start:end], settings)
        start = end
    return outs


def decrypt_fields(record: Mapping[str, Any], fields: Iterable[str], key: Sm4Key,
                   settings: Sm4Settings = DEFAULT_SETTINGS) -> dict[str, Any]:
    """Inverse of encrypt_fields for text values (used by tests, replay checks and the CLI)."""
    out = dict(record)
    for name in fields:
        value = out.get(name)
        if value is not None:
            out[name] = decrypt_text(value, key, settings)
    return out
