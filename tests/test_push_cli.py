"""``ticker push vapid-keys`` as a real process: a usable P-256 key pair, written safely."""

from __future__ import annotations

import stat
from pathlib import Path

from ticker_service.push.vapid import load, public_key_b64

from .support.processes import base_env, run_ticker


def test_vapid_keys_printed(tmp_path: Path) -> None:
    """Without --out: the private key's PEM, then the matching public key on the last line."""
    done = run_ticker(base_env(), "push", "vapid-keys")
    assert done.returncode == 0, done.stderr
    pem = done.stdout[: done.stdout.index("-----END PRIVATE KEY-----") + len("-----END PRIVATE KEY-----")]
    assert public_key_b64(load(pem)) == done.stdout.strip().splitlines()[-1]


def test_vapid_keys_written_once(tmp_path: Path) -> None:
    """With --out: a new file only its owner can read; an existing key is never overwritten."""
    out = tmp_path / "vapid.pem"
    done = run_ticker(base_env(), "push", "vapid-keys", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert public_key_b64(load(out.read_text())) == done.stdout.strip().splitlines()[-1]
    before = out.read_text()
    again = run_ticker(base_env(), "push", "vapid-keys", "--out", str(out))
    assert again.returncode == 1 and "exists" in again.stderr
    assert out.read_text() == before


def test_push_help() -> None:
    done = run_ticker(base_env(), "push", "--help")
    assert done.returncode == 0 and "vapid-keys" in done.stdout
