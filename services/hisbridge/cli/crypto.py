"""`hisbridge crypto encrypt|decrypt`: SM4 one value per stdin line → one result per stdout line.

A line that fails (e.g. a ciphertext that does not decrypt) prints an empty line on stdout, so results
stay aligned with their input lines, and `line N: reason` on stderr; the exit code is then 1. The key
comes from HISBRIDGE_SM4_KEY or --key-file and is never printed.
"""
from __future__ import annotations

import sys
from typing import Callable

import click
from hisbridge.chain.crypto import (Sm4ConfigError, Sm4Key, Sm4Settings,
                                    decrypt_text, encrypt_text, load_key)
from hisbridge.cli.common import current_settings


def _settings(mode: str, encoding: str, iv: str | None, uppercase: bool) -> Sm4Settings:
    iv_bytes = None
    if iv is not None:
        try:
            iv_bytes = bytes.fromhex(iv)
        except ValueError:
            raise click.BadParameter("must be 32 hexadecimal characters", param_hint="--iv") from None
    try:
        return Sm4Settings(mode=mode, encoding=encoding, uppercase=uppercase, iv=iv_bytes)
    except Sm4ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _key(key_file: str | None) -> Sm4Key:
    try:
        return load_key(current_settings().sm4, key_file)
    except Sm4ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _run(transform: Callable[[str], str]) -> None:
    failures = 0
    stdin = click.get_text_stream("stdin", encoding="utf-8")
    for number, line in enumerate(stdin, start=1):
        value = line.rstrip("\r\n")
        try:
            result = transform(value)
        except ValueError as exc:  # Sm4DecryptError and friends: never carry the key or the plaintext
            failures += 1
            click.echo(f"line {number}: {exc}", err=True)
            result = ""
        click.echo(result)
    if failures:
        sys.exit(1)


def _options(command: Callable) -> Callable:
    for option in reversed([
        click.option("--mode", type=click.Choice(["ecb", "cbc"]), default="ecb", show_default=True),
        click.option("--encoding", type=click.Choice(["hex", "base64"]), default="hex", show_default=True,
                     help="Ciphertext encoding."),
        click.option("--iv", metavar="HEX", help="CBC initialisation vector, 32 hex characters."),
        click.option("--uppercase", is_flag=True, help="Uppercase hex ciphertext."),
        click.option("--key-file", type=click.Path(dir_okay=False),
                     help="File holding the 32-hex-character key (default: HISBRIDGE_SM4_KEY_FILE, then HISBRIDGE_SM4_KEY)."),
    ]):
        command = option(command)
    return command


@click.group(name="crypto")
def cli() -> None:
    """SM4 (GB/T 32907) field encryption with the pipeline's settings."""


@cli.command()
@_options
def encrypt(mode: str, encoding: str, iv: str | None, uppercase: bool, key_file: str | None) -> None:
    """Encrypt each stdin line (UTF-8)."""
    settings, key = _settings(mode, encoding, iv, uppercase), _key(key_file)
    _run(lambda value: encrypt_text(value, key, settings))


@cli.command()
@_options
def decrypt(mode: str, encoding: str, iv: str | None, uppercase: bool, key_file: str | None) -> None:
    """Decrypt each stdin line (hex accepted in either case)."""
    settings, key = _settings(mode, encoding, iv, uppercase), _key(key_file)
    _run(lambda value: decrypt_text(value, key, settings))
