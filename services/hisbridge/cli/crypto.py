"""`hisbridge crypto encrypt|decrypt`: SM4 one value per stdin line → one result per stdout line.

Key, mode, padding, encoding, case and IV are the pipeline's own (settings `sm4.*`: HISBRIDGE_SM4_KEY or
HISBRIDGE_SM4_KEY_FILE, HISBRIDGE_SM4_MODE, …), so a spot check decrypts what the worker wrote; an option
overrides one of them. A line that fails (e.g. a ciphertext that does not decrypt) prints an empty line on
stdout, so results stay aligned with their input lines, and `line N: reason` on stderr; the exit code is
then 1. The key is never printed.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Callable

import click
from hisbridge.chain.crypto import (Sm4ConfigError, Sm4Key, Sm4Settings,
                                    decrypt_text, encrypt_text, load_key,
                                    sm4_settings)
from hisbridge.cli.common import current_settings, group
from hisbridge.messages import EXIT_CHECK_FAILED, text


def _settings(mode: str | None, encoding: str | None, iv: str | None, uppercase: bool | None) -> Sm4Settings:
    from hisbridge.messages import OperatorError
    try:
        base = sm4_settings(current_settings().sm4)
    except Sm4ConfigError as exc:
        raise OperatorError("crypto.settings", detail=str(exc)) from None
    changes: dict = {k: v for k, v in (("mode", mode), ("encoding", encoding), ("uppercase", uppercase))
                     if v is not None}
    if iv is not None:
        try:
            changes["iv"] = bytes.fromhex(iv)
        except ValueError:
            raise OperatorError("crypto.iv") from None
    try:
        return dataclasses.replace(base, **changes)
    except Sm4ConfigError as exc:
        raise OperatorError("crypto.settings", detail=str(exc)) from None


def _key(key_file: str | None) -> Sm4Key:
    from hisbridge.messages import OperatorError
    sm4 = current_settings().sm4
    path = Path(key_file) if key_file else sm4.key_file
    if path is None and sm4.key is None:
        raise OperatorError("crypto.no_key")
    if path is not None and not path.is_file():
        raise OperatorError("crypto.key_file", path=path)
    try:
        return load_key(sm4, path)
    except Sm4ConfigError as exc:
        raise OperatorError("crypto.key", detail=str(exc)) from None


def _run(transform: Callable[[str], str]) -> None:
    failures = 0
    stdin = click.get_text_stream("stdin", encoding="utf-8")
    for number, line in enumerate(stdin, start=1):
        value = line.rstrip("\r\n")
        try:
            result = transform(value)
        except ValueError as exc:  # Sm4DecryptError and friends: never carry the key or the plaintext
            failures += 1
            click.echo(text("crypto.line", line=number, detail=str(exc)), err=True)
            result = ""
        click.echo(result)
    if failures:
        sys.exit(EXIT_CHECK_FAILED)


def _options(command: Callable) -> Callable:
    for option in reversed([
        click.option("--mode", type=click.Choice(["ecb", "cbc"]), default=None, help="crypto.mode"),
        click.option("--encoding", type=click.Choice(["hex", "base64"]), default=None, help="crypto.encoding"),
        click.option("--iv", metavar="HEX", help="crypto.iv_option"),
        click.option("--uppercase/--lowercase", default=None, help="crypto.uppercase"),
        click.option("--key-file", type=click.Path(dir_okay=False), help="crypto.key_file_option"),
    ]):
        command = option(command)
    return command


@group("crypto", help="crypto.help")
def cli() -> None:
    pass


@cli.command(help="crypto.encrypt")
@_options
def encrypt(mode: str | None, encoding: str | None, iv: str | None, uppercase: bool | None,
            key_file: str | None) -> None:
    settings, key = _settings(mode, encoding, iv, uppercase), _key(key_file)
    _run(lambda value: encrypt_text(value, key, settings))


@cli.command(help="crypto.decrypt")
@_options
def decrypt(mode: str | None, encoding: str | None, iv: str | None, uppercase: bool | None,
            key_file: str | None) -> None:
    settings, key = _settings(mode, encoding, iv, uppercase), _key(key_file)
    _run(lambda value: decrypt_text(value, key, settings))
