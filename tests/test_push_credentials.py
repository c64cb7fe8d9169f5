"""Push credentials are checked when ``ticker worker`` starts: a placeholder left in a Secret, a key that is not
one, or a file that is not there stops it at once with a message naming the setting, not a traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .support.fakes.fcm import FakeFcm
from .support.processes import ROOT, RedisServer, base_env, run_ticker


def secret_placeholder(name: str) -> str:
    """The placeholder value the Kubernetes example Secret ships for ``name``."""
    text = (ROOT / "deploy" / "kubernetes" / "base" / "secret.yaml").read_text()
    found = re.search(rf"^\s+{name}: (\S+)$", text, re.MULTILINE)
    assert found, f"{name} is not in the example Secret"
    return found.group(1)


def no_private_key() -> str:
    account = FakeFcm().service_account()
    del account["private_key"]
    return json.dumps(account)


CASES = {
    "fcm placeholder": ({"TICKER_PUSH_FCM_CREDENTIALS": "placeholder"}, "TICKER_PUSH_FCM_CREDENTIALS is not"),
    "fcm without a key": ({"TICKER_PUSH_FCM_CREDENTIALS": "no-key"}, "TICKER_PUSH_FCM_CREDENTIALS is not"),
    "fcm file missing": ({"TICKER_PUSH_FCM_CREDENTIALS_FILE": "missing"}, "TICKER_PUSH_FCM_CREDENTIALS_FILE is not"),
    "apns placeholder": ({"TICKER_PUSH_APNS_KEY": "placeholder"}, "TICKER_PUSH_APNS_KEY is not"),
    "vapid placeholder": ({"TICKER_PUSH_VAPID_PRIVATE_KEY": "placeholder"}, "TICKER_PUSH_VAPID_PRIVATE_KEY is not"),
}


@pytest.mark.parametrize("case", CASES)
def test_unusable_push_credentials_stop_the_worker_naming_the_setting(
    case: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    env, expected = CASES[case]
    values = {
        "placeholder": secret_placeholder(next(iter(env))) if "placeholder" in case else "",
        "no-key": no_private_key(),
        "missing": str(tmp_path / "nowhere.json"),
    }
    env = {name: values[value] for name, value in env.items()}
    done = run_ticker(base_env(REDIS_URL=redis_server.url, **env), "worker")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "JSONDecodeError" not in done.stderr, done.stderr
    assert "unset it to turn that bridge off" in done.stderr
