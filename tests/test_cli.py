"""The ``ticker`` command line as real processes: help, tokens, publish and tail against a running service."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from .support.flashes import flash_body
from .support.processes import ROOT, TIMEOUT, Service, base_env, run_ticker, ticker
from .support.readers import next_ws_event, wait_readers, ws_reader

# Each subcommand, and the words the top-level help uses to say what it does.
COMMANDS = {
    "run": "run everything: embedded in-memory mode, or hub + worker with REDIS_URL",
    "hub": "run a hub (API + readers' WebSocket/SSE) on REDIS_URL",
    "worker": "run the arq fan-out worker on REDIS_URL",
    "token": "create, rotate or revoke editor tokens",
    "publish": "publish a flash through the HTTP API",
    "withdraw": "withdraw (kill) a flash: off tickers, lists, resumes and notification shades",
    "tail": "follow flashes live and print each event as it arrives",
}
TOKEN_ACTIONS = {
    "create": "create a token and print it once (last line of output)",
    "rotate": "replace a token; the old one keeps working for the overlap",
    "revoke": "revoke the token with this name",
}
# The options each subcommand's own --help must list.
OPTIONS = {
    ("run",): ["--host", "--port"],
    ("hub",): ["--host", "--port"],
    ("worker",): [],
    ("token",): ["create", "rotate", "revoke"],
    ("token", "create"): ["--name", "--scopes", "--languages", "--categories"],
    ("token", "rotate"): ["--name", "--overlap-seconds"],
    ("token", "revoke"): ["name"],
    ("publish",): ["headline", "--lang", "--category", "--urgency", "--region", "--token", "--server"],
    ("withdraw",): ["flash_id", "--token", "--server", "--retries"],
    ("tail",): ["--lang", "--category", "--region", "--max-urgency", "--server"],
}


def one_line(text: str) -> str:
    """argparse wraps help text at the terminal width: compare it with its whitespace collapsed."""
    return " ".join(text.split())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_token(service: Service, name: str, *options: str) -> str:
    created = run_ticker(service.env, "token", "create", "--name", name, *options)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("tkr_"), created.stdout
    return token


async def post_flash(client: httpx.AsyncClient, service: Service, token: str, headline: str) -> httpx.Response:
    return await client.post(
        f"{service.base_url}/v1/flashes", json=flash_body(headline), headers={"Authorization": f"Bearer {token}"}
    )


# -- help ----------------------------------------------------------------------------------------------------------


def test_top_level_help_says_what_each_command_does(tmp_path: Path) -> None:
    result = run_ticker(base_env(TICKER_DATA_DIR=str(tmp_path)), "--help")
    assert result.returncode == 0, result.stderr
    text = one_line(result.stdout)
    assert text.startswith("usage: ticker")
    assert "live breaking-news push service" in text
    for command, does in COMMANDS.items():
        assert f"{command} {does}" in text, command


@pytest.mark.parametrize("argv", list(OPTIONS), ids=" ".join)
def test_each_subcommand_help_exits_0_with_its_usage_and_options(argv: tuple[str, ...], tmp_path: Path) -> None:
    result = run_ticker(base_env(TICKER_DATA_DIR=str(tmp_path)), *argv, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    text = one_line(result.stdout)
    assert text.startswith(f"usage: ticker {' '.join(argv)} [-h]"), text
    for option in OPTIONS[argv]:
        assert option in text, (argv, option)
    if argv == ("token",):
        for action, does in TOKEN_ACTIONS.items():
            assert f"{action} {does}" in text


@pytest.mark.parametrize("argv", list(OPTIONS), ids=" ".join)
def test_each_subcommand_help_says_what_it_does(argv: tuple[str, ...], tmp_path: Path) -> None:
    result = run_ticker(base_env(TICKER_DATA_DIR=str(tmp_path)), *argv, "--help")
    assert result.returncode == 0, result.stderr
    does = TOKEN_ACTIONS[argv[1]] if len(argv) == 2 else COMMANDS[argv[0]]
    assert does in one_line(result.stdout)


# -- commands that need REDIS_URL ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["hub", "worker"])
def test_hub_and_worker_without_redis_url_exit_2_and_say_why(command: str, tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_ticker(base_env(TICKER_DATA_DIR=str(tmp_path)), command)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert time.monotonic() - started < TIMEOUT  # refuses at once, does not try to serve
    assert result.stdout == ""
    message = result.stderr.strip()
    assert message.startswith(f"ticker {command} needs REDIS_URL"), message
    assert "ticker run" in message  # and points at the embedded mode instead
    assert "Traceback" not in message


def test_publish_without_a_token_exits_2_and_says_why(tmp_path: Path) -> None:
    result = run_ticker(
        base_env(TICKER_DATA_DIR=str(tmp_path)),
        "publish",
        "BREAKING: no token",
        "--lang",
        "en",
        "--category",
        "politics",
        "--server",
        "http://127.0.0.1:9",
    )
    assert result.returncode == 2
    assert "--token" in result.stderr and "TICKER_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


# -- tokens --------------------------------------------------------------------------------------------------------


def test_token_create_prints_the_token_once_as_the_last_line(service: Service) -> None:
    name = unique("desk")
    created = run_ticker(service.env, "token", "create", "--name", name)
    assert created.returncode == 0, created.stderr
    lines = created.stdout.strip().splitlines()
    token = lines[-1]
    assert token.startswith("tkr_")
    assert len(token) >= 4 + 32 and token.isascii() and " " not in token
    assert created.stdout.count(token) == 1
    assert name in lines[0]
    assert token not in created.stderr
    assert create_token(service, unique("desk")) != token  # a fresh random token each time


def test_only_the_sha256_of_a_token_is_stored(service: Service) -> None:
    """Embedded: the token file in TICKER_DATA_DIR; Redis: the ``ticker:tokens`` hash. Never the token itself."""
    name = unique("hashed")
    token = create_token(service, name)
    sha = hashlib.sha256(token.encode()).hexdigest()
    if service.mode == "embedded":
        path = Path(service.env["TICKER_DATA_DIR"]) / "tokens.json"
        stored = path.read_text()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        leftovers = [p.name for p in path.parent.iterdir() if p.name not in ("tokens.json", "tokens.lock")]
        assert leftovers == []  # no temporary file left behind with anything in it
        assert (path.parent / "tokens.lock").read_text() == ""  # the lock file holds nothing
    else:
        assert service.redis is not None
        with service.redis.client() as redis:
            stored = json.dumps({k.decode(): v.decode() for k, v in redis.hgetall("ticker:tokens").items()})
    assert token not in stored
    assert token.removeprefix("tkr_") not in stored
    record = json.loads(stored)[name]
    if service.mode == "redis":
        record = json.loads(record)
    assert record["sha256"] == sha


async def test_token_created_while_running_is_accepted_and_revoke_makes_it_401(
    service: Service, client: httpx.AsyncClient
) -> None:
    """The running service sees tokens created and revoked by the CLI at once (file re-read per request / Redis)."""
    name = unique("live-desk")
    token = await asyncio.to_thread(create_token, service, name)
    response = await post_flash(client, service, token, "BREAKING: new desk publishes")
    assert response.status_code == 201, response.text

    revoked = await asyncio.to_thread(run_ticker, service.env, "token", "revoke", name)
    assert revoked.returncode == 0, revoked.stderr
    assert name in revoked.stdout
    response = await post_flash(client, service, token, "BREAKING: revoked desk publishes")
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"

    # Revoking one token leaves the others alone; revoking it again is an error that says so.
    response = await post_flash(client, service, service.token, "BREAKING: other desk still publishes")
    assert response.status_code == 201, response.text
    again = await asyncio.to_thread(run_ticker, service.env, "token", "revoke", name)
    assert again.returncode == 1
    assert f"No editor token named {name!r}" in again.stderr


async def test_token_create_with_an_existing_name_replaces_the_old_token(
    service: Service, client: httpx.AsyncClient
) -> None:
    name = unique("rotated")
    old = await asyncio.to_thread(create_token, service, name)
    new = await asyncio.to_thread(create_token, service, name)
    assert (await post_flash(client, service, new, "BREAKING: rotated token")).status_code == 201
    assert (await post_flash(client, service, old, "BREAKING: old token")).status_code == 401
    assert (await asyncio.to_thread(run_ticker, service.env, "token", "revoke", name)).returncode == 0


async def test_token_scopes_limit_what_a_token_may_do(service: Service, client: httpx.AsyncClient) -> None:
    """A publish-only token cannot withdraw (403, nothing changes); an admin-only token cannot publish."""
    publisher = await asyncio.to_thread(create_token, service, unique("pub-only"), "--scopes", "publish")
    admin = await asyncio.to_thread(create_token, service, unique("admin-only"), "--scopes", "admin")
    created = await post_flash(client, service, publisher, "BREAKING: publish-only desk")
    assert created.status_code == 201, created.text
    location = service.base_url + created.headers["location"]
    denied = await client.delete(location, headers={"Authorization": f"Bearer {publisher}"})
    assert denied.status_code == 403, denied.text
    assert denied.headers["content-type"] == "application/problem+json"
    assert "withdraw" in denied.json()["detail"]
    assert (await client.get(location)).json()["pubStatus"] == "usable"
    refused = await post_flash(client, service, admin, "BREAKING: admin publishes")
    assert refused.status_code == 403, refused.text
    bad = await asyncio.to_thread(
        run_ticker, service.env, "token", "create", "--name", unique("bad"), "--scopes", "publish,root"
    )
    assert bad.returncode == 2 and "scopes are a comma-separated list" in bad.stderr


# -- publish -------------------------------------------------------------------------------------------------------


def publish_argv(headline: str, *extra: str) -> list[str]:
    return ["publish", headline, "--lang", "en", "--category", "politics", "--urgency", "1", *extra]


async def test_publish_command_reaches_a_websocket_reader(service: Service) -> None:
    headline = f"BREAKING: published from the command line {uuid.uuid4().hex[:8]}"
    async with ws_reader(service, "lang=en") as ws:
        result = await asyncio.to_thread(
            run_ticker, service.env, *publish_argv(headline, "--token", service.token, "--server", service.base_url)
        )
        assert result.returncode == 0, (result.stdout, result.stderr)
        doc = json.loads(result.stdout)  # the service's 201 body: the ninjs document
        event = await next_ws_event(ws)
        while event["flash"]["uri"] != doc["uri"]:
            event = await next_ws_event(ws)
    assert doc["headlines"][0]["value"] == headline
    assert (doc["language"], doc["urgency"], doc["subjects"][0]["literal"]) == ("en", 1, "politics")
    assert event["type"] == "flash"
    assert event["flash"] == doc


async def test_publish_reads_token_and_server_from_the_environment(service: Service) -> None:
    headline = f"BREAKING: published with TICKER_TOKEN {uuid.uuid4().hex[:8]}"
    env = {**service.env, "TICKER_TOKEN": service.token, "TICKER_URL": service.base_url}
    async with ws_reader(service, "lang=en") as ws:
        result = await asyncio.to_thread(run_ticker, env, *publish_argv(headline))
        assert result.returncode == 0, (result.stdout, result.stderr)
        uri = json.loads(result.stdout)["uri"]
        event = await next_ws_event(ws)
        while event["flash"]["uri"] != uri:
            event = await next_ws_event(ws)
    assert event["flash"]["headlines"][0]["value"] == headline


async def test_publish_with_a_bad_token_exits_1_and_prints_the_problem(service: Service) -> None:
    result = await asyncio.to_thread(
        run_ticker,
        service.env,
        *publish_argv("BREAKING: refused", "--token", "tkr_not-a-real-token", "--server", service.base_url),
    )
    assert result.returncode == 1
    problem = json.loads(result.stdout)
    assert problem["status"] == 401


async def test_withdraw_command_kills_a_flash(service: Service) -> None:
    """``ticker withdraw <id>`` withdraws it (readers get ``withdraw``); again is a no-op; an unknown id exits 1
    with the 404 problem; without a token it exits 2."""
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{service.base_url}/v1/flashes", json=flash_body(unique("BREAKING: kill me")), headers=service.headers()
        )
    fid = response.json()["uri"].rsplit(":", 1)[-1]
    env = {**service.env, "TICKER_TOKEN": service.token, "TICKER_URL": service.base_url}
    async with ws_reader(service, "lang=en") as ws:
        result = await asyncio.to_thread(run_ticker, env, "withdraw", fid)
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert json.loads(result.stdout)["pubStatus"] == "canceled"
        event = await next_ws_event(ws)
        while event["flash"]["uri"] != response.json()["uri"]:
            event = await next_ws_event(ws)
    assert event["type"] == "withdraw"
    again = await asyncio.to_thread(run_ticker, env, "withdraw", fid)
    assert again.returncode == 0 and json.loads(again.stdout)["version"] == "2"
    unknown = await asyncio.to_thread(run_ticker, env, "withdraw", "0000000000000000000")
    assert unknown.returncode == 1 and json.loads(unknown.stdout)["status"] == 404
    no_token = {k: v for k, v in env.items() if k != "TICKER_TOKEN"}
    assert (await asyncio.to_thread(run_ticker, no_token, "withdraw", fid)).returncode == 2


# -- tail ----------------------------------------------------------------------------------------------------------


async def read_line_containing(stream: asyncio.StreamReader, text: str, deadline: float) -> tuple[str, list[str]]:
    """Read lines until one contains ``text``; return it and every line read before it."""
    before: list[str] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no line containing {text!r}; got {before!r}")
        raw = await asyncio.wait_for(stream.readline(), remaining)
        if not raw:
            raise EOFError(f"tail ended before printing {text!r}; got {before!r}")
        line = raw.decode().rstrip("\n")
        if text in line:
            return line, before
        before.append(line)


def _as_in_a_terminal() -> None:
    """Ctrl-C's SIGINT as a terminal delivers it: a suite started in the background (``cmd &`` in a script) hands
    its children SIGINT ignored, and ``ticker tail`` would then rightly not stop on it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
async def tail(service: Service) -> AsyncIterator[asyncio.subprocess.Process]:
    """``ticker tail --lang en`` as a subprocess, connected (the hub counts it) before the test publishes."""
    await wait_readers(service, 0)  # an earlier test's readers are gone, so the count below is this one
    env = {k: v for k, v in service.env.items() if k != "REDIS_URL"}
    proc = await asyncio.create_subprocess_exec(
        *ticker("tail", "--lang", "en", "--server", service.base_url),
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_as_in_a_terminal,
    )
    try:
        await wait_readers(service, 1)
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        await wait_readers(service, 0)


async def test_tail_prints_flashes_published_after_it_connected(
    service: Service, client: httpx.AsyncClient, tail: asyncio.subprocess.Process
) -> None:
    tag = uuid.uuid4().hex[:8]
    skipped = f"BREAKING: in Arabic, filtered out {tag}"
    headline = f"BREAKING: tailed from a terminal {tag}"
    headers = service.headers()
    response = await client.post(
        f"{service.base_url}/v1/flashes", json=flash_body(skipped, language="ar"), headers=headers
    )
    assert response.status_code == 201, response.text
    response = await client.post(f"{service.base_url}/v1/flashes", json=flash_body(headline), headers=headers)
    assert response.status_code == 201, response.text

    assert tail.stdout is not None
    line, before = await read_line_containing(tail.stdout, headline, time.monotonic() + TIMEOUT)
    assert line.split()[0] == "flash"
    assert "[en]" in line and "u1" in line
    assert not any(skipped in earlier for earlier in before)  # --lang en reached the server's filter
    assert tail.returncode is None  # still following


async def test_tail_exits_quietly_on_ctrl_c(service: Service, tail: asyncio.subprocess.Process) -> None:
    tail.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(tail.wait(), TIMEOUT) == 0
    assert tail.stderr is not None
    assert b"Traceback" not in await tail.stderr.read()


def test_cli_is_the_installed_ticker_entry_point() -> None:
    """The tests run ``python -m ticker_service``; the ``ticker`` script the README names is the same ``main``."""
    script = Path(sys.executable).parent / "ticker"
    if not script.exists():
        pytest.skip("the ticker script is not installed in this environment")
    env = base_env()
    installed = subprocess.run(
        [str(script), "--help"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout == run_ticker(env, "--help").stdout


def test_concurrent_token_creates_lose_nothing(tmp_path: Path) -> None:
    """Twelve `ticker token create` at once: every printed token is accepted afterwards (the file is locked)."""
    import asyncio
    import subprocess

    from ticker_service.security.tokens import FileTokenStore

    from .support.processes import ROOT, ticker

    env = base_env(TICKER_DATA_DIR=str(tmp_path))
    procs = [
        subprocess.Popen(
            ticker("token", "create", "--name", f"desk-{i}"), env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for i in range(12)
    ]
    tokens = [proc.communicate(timeout=30)[0].strip().splitlines()[-1] for proc in procs]
    store = FileTokenStore(tmp_path)
    accepted = [asyncio.run(store.authenticate(token)) for token in tokens]
    assert [editor.name if editor else None for editor in accepted] == [f"desk-{i}" for i in range(12)]
