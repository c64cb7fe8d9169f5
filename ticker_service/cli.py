"""``ticker``: run the service, manage editor tokens, publish and follow flashes from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import shlex
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from .redis_conn import describe
from .security.tokens import EDITOR_SCOPES, SCOPES, Desk
from .serve import serve
from .settings import Settings

if TYPE_CHECKING:
    import httpx

    from .security.tokens import TokenStore

T = TypeVar("T")

DESCRIPTION = """\
ticker — live breaking-news push service.

Without REDIS_URL everything runs in one process, in memory (try: ticker run).
With REDIS_URL set, run any number of `ticker hub` processes and one or more `ticker worker`s.
"""


def _base_url(settings: Settings, host: str, port: int) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}"


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    base = _base_url(settings, args.host, args.port)
    token = asyncio.run(_with_tokens(settings, lambda store: store.create("demo")))
    if settings.embedded:
        mode = "embedded mode (one process, in memory; set REDIS_URL for the distributed path)"
    else:
        mode = f"hub + worker on {describe(settings)}"
    body = json.dumps(
        {
            "headline": "BREAKING: ticker is live",
            "language": "en",
            "category": "technology",
            "urgency": 1,
            "regions": ["europe"],
        }
    )
    curl = (
        f"curl -sS -X POST {base}/v1/flashes -H {shlex.quote('Authorization: Bearer ' + token)} "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )
    print(
        f"ticker: {mode}\n  demo page:  {base}/\n  editor:     {base}/editor\n  demo token: {token}\n"
        f"  publish:    {curl}\n",
        flush=True,
    )
    from .push.settings import PushSettings

    push = PushSettings()  # read once: the device API and the worker beside the hub share it
    background = None
    if not settings.embedded:
        from workers.worker import supervise_worker  # the worker beside the hub, in this process

        background = functools.partial(supervise_worker, settings, push)
    serve(settings, args.host, args.port, push=push, background=background)
    return 0


def cmd_hub(args: argparse.Namespace, settings: Settings) -> int:
    if settings.embedded:
        print("ticker hub needs REDIS_URL (use `ticker run` for the embedded mode)", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    serve(settings, args.host, args.port, processes=args.workers)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    if settings.embedded:
        print("ticker worker needs REDIS_URL (the embedded `ticker run` fans out in-process)", file=sys.stderr)
        return 2
    from workers.worker import run_worker

    run_worker(settings)
    return 0


async def _with_tokens(
    settings: Settings, action: Callable[[TokenStore], Awaitable[T]], audited: str | None = None
) -> T:
    """Run ``action`` on the token store of this mode: the data directory's file, or Redis. In Redis mode, a token
    change (``audited`` says which) also goes to the hubs' audit log, as done from the command line by whom."""
    from .security.tokens import FileTokenStore, RedisTokenStore

    if settings.embedded:
        return await action(FileTokenStore(settings.data_dir))
    from .redis_conn import redis_client

    async with redis_client(settings) as redis:
        result = await action(RedisTokenStore(redis))
        if audited is not None:
            import getpass
            import socket

            from .security.audit import RedisAuditLog, entry

            who = f"cli:{getpass.getuser()}@{socket.gethostname()}"
            status = 404 if result is None or result is False else 200
            item = entry("token", status, who=who, ip=None, flash=None, detail=audited)
            await RedisAuditLog(redis, settings.audit_max_entries).record(item)
        return result


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    where = f"in {settings.data_dir}" if settings.embedded else f"in Redis ({describe(settings)})"
    if args.token_command == "create":
        desk = Desk(args.languages, args.categories, args.needs_approval)
        change = f"create {args.name!r}: scopes {','.join(sorted(args.scopes))}; desk {desk}"
        token = asyncio.run(_with_tokens(settings, lambda store: store.create(args.name, args.scopes, desk), change))
        print(f"Created editor token {args.name!r} {where}. It is shown only once; only its hash is stored.")
        print(token)
        return 0
    if args.token_command == "rotate":
        change = f"rotate {args.name!r}: overlap {args.overlap_seconds:g} s"
        rotated = asyncio.run(
            _with_tokens(settings, lambda store: store.rotate(args.name, args.overlap_seconds), change)
        )
        if rotated is None:
            print(f"No editor token named {args.name!r} {where}.", file=sys.stderr)
            return 1
        print(
            f"Rotated editor token {args.name!r} {where}: the new one works now, the old one for "
            f"{args.overlap_seconds:g} more seconds. It is shown only once."
        )
        print(rotated)
        return 0
    if asyncio.run(_with_tokens(settings, lambda store: store.revoke(args.name), f"revoke {args.name!r}")):
        print(f"Revoked editor token {args.name!r} {where}.")
        return 0
    print(f"No editor token named {args.name!r} {where}.", file=sys.stderr)
    return 1


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    import httpx

    token = args.token or os.environ.get("TICKER_TOKEN")
    if not token:
        print("publish needs an editor token: --token or TICKER_TOKEN (see `ticker token create`)", file=sys.stderr)
        return 2
    body: dict[str, Any] = {
        "headline": args.headline,
        "language": args.lang,
        "urgency": args.urgency,
        "category": args.category,
        "regions": args.region or [],
    }
    if args.link:
        body["url"] = args.link
    if args.source:
        body["source"] = args.source
    if args.story:
        body["story"] = args.story
    if args.embargo:
        body["embargo"] = args.embargo
    # Every publish carries an Idempotency-Key, so retrying after a 503, 409 or a dropped connection is safe:
    # the flash is published once whatever happened to the earlier attempts.
    key = args.idempotency_key or f"cli-{uuid.uuid4()}"
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    url = f"{args.server.rstrip('/')}/v1/flashes"
    response = _retried(
        "publish",
        lambda: httpx.post(url, json=body, headers=headers, timeout=10),
        args.retries,
        retry_on=(409, 503),
        note=f" with Idempotency-Key {key}",
    )
    if response is None:
        return 1
    print(json.dumps(response.json(), ensure_ascii=False, indent=2))
    if response.status_code == 202:
        print("# waiting for a second editor's approval: not published yet", file=sys.stderr)
    elif response.status_code == 201 and response.json().get("embargoedUntil"):
        print(f"# scheduled: goes out at {response.json()['embargoedUntil']}", file=sys.stderr)
    return 0 if response.status_code in (201, 202) else 1


def _retried(
    what: str, send: Callable[[], httpx.Response], retries: int, *, retry_on: tuple[int, ...], note: str = ""
) -> httpx.Response | None:
    """``send``'s first answer that is not in ``retry_on``, trying again after a dropped connection or such an
    answer with a jittered backoff (0.5 s doubling to 10 s); ``None``, once said why, when ``retries`` more tries
    did not get one. Only for requests that are safe to repeat."""
    import httpx

    delay = 0.5
    for attempt in range(1, retries + 2):
        try:
            response = send()
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code not in retry_on:
                return response
            problem = f"HTTP {response.status_code}"
        if attempt > retries:
            print(f"{what} failed after {attempt} attempts ({problem})", file=sys.stderr)
            return None
        wait = delay * (0.5 + random.random())
        print(f"# {problem}; retrying in {wait:.1f}s{note}", file=sys.stderr, flush=True)
        time.sleep(wait)
        delay = min(delay * 2, 10)
    return None


async def _tail(args: argparse.Namespace) -> None:
    from ticker_client import TickerClient

    async with TickerClient(
        args.server, lang=args.lang, category=args.category, region=args.region, max_urgency=args.max_urgency
    ) as client:
        async for event in client:
            if event.type == "reset":
                print(f"reset    {event.event_id}  (history gap: {len(event.flashes)} current flashes follow)")
            for flash in reversed(event.flashes) if event.type == "reset" else [event.flash or {}]:
                line = f"{event.type:<8} {event.event_id}  [{flash.get('language')}] u{flash.get('urgency')}  "
                instead = f"  (replaces {event.replaces})" if event.replaces else ""
                print(line + flash["headlines"][0]["value"] + instead, flush=True)


def cmd_withdraw(args: argparse.Namespace, settings: Settings) -> int:
    """Kill a flash: ``DELETE /v1/flashes/{id}``, retried on 503 or a dropped connection (a withdrawal twice is the
    same withdrawal, so a retry is safe)."""
    import httpx

    token = args.token or os.environ.get("TICKER_TOKEN")
    if not token:
        print("withdraw needs an editor token: --token or TICKER_TOKEN (see `ticker token create`)", file=sys.stderr)
        return 2
    url = f"{args.server.rstrip('/')}/v1/flashes/{quote(args.flash_id, safe='')}"
    headers = {"Authorization": f"Bearer {token}"}

    def delete() -> httpx.Response:
        return httpx.delete(url, headers=headers, timeout=10)

    response = _retried("withdraw", delete, args.retries, retry_on=(503,))
    if response is None:
        return 1
    print(json.dumps(response.json(), ensure_ascii=False, indent=2))
    return 0 if response.status_code == 200 else 1


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    try:
        asyncio.run(_tail(args))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_push(args: argparse.Namespace, settings: Settings) -> int:
    from .push.vapid import generate

    pem, public = generate()
    if args.out:
        try:
            with open(os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as fh:
                fh.write(pem)
        except FileExistsError:
            print(f"{args.out} exists; not overwriting a key", file=sys.stderr)
            return 1
        print(f"VAPID private key written to {args.out} (set TICKER_PUSH_VAPID_PRIVATE_KEY_FILE={args.out}).")
    else:
        print(pem, end="")
    print("Public key (the browsers' applicationServerKey, served at /v1/push/vapid-public-key):")
    print(public)
    return 0


def _command(parent: Any, name: str, text: str) -> argparse.ArgumentParser:
    """A subcommand whose one-line text shows both in the parent's list and in its own --help."""
    parser: argparse.ArgumentParser = parent.add_parser(name, help=text, description=text)
    return parser


def _scopes(text: str) -> frozenset[str]:
    scopes = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = scopes - set(SCOPES)
    if unknown or not scopes:
        raise argparse.ArgumentTypeError(f"scopes are a comma-separated list of {', '.join(SCOPES)}")
    return scopes


def _csv(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ticker", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def serve_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default=settings.host, help="address to listen on (default: %(default)s)")
        p.add_argument("--port", type=int, default=settings.port, help="port to listen on (default: %(default)s)")

    p = _command(sub, "run", "run everything: embedded in-memory mode, or hub + worker with REDIS_URL")
    serve_options(p)
    p.set_defaults(func=cmd_run)
    p = _command(sub, "hub", "run a hub (API + readers' WebSocket/SSE) on REDIS_URL; run as many as you like")
    serve_options(p)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="hub processes sharing the port, each with its own Redis subscription (default: 1; one per core)",
    )
    p.set_defaults(func=cmd_hub)
    _command(sub, "worker", "run the arq fan-out worker on REDIS_URL").set_defaults(func=cmd_worker)

    p = _command(sub, "token", "create, rotate or revoke editor tokens")
    tokens = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = _command(tokens, "create", "create a token and print it once (last line of output)")
    create.add_argument("--name", required=True, help="who the token is for, e.g. 'sports-desk'")
    create.add_argument(
        "--scopes",
        type=_scopes,
        default=EDITOR_SCOPES,
        help=f"comma-separated, of {', '.join(SCOPES)} (default: publish,correct,withdraw)",
    )
    create.add_argument("--languages", type=_csv, default=(), help="desk: only these languages (e.g. en,ar)")
    create.add_argument("--categories", type=_csv, default=(), help="desk: only these categories (e.g. sports)")
    create.add_argument(
        "--needs-approval",
        action="store_true",
        help="its FLASHes (urgency 1) wait for another editor with the approve scope (as TICKER_FLASH_APPROVAL=1)",
    )
    rotate = _command(tokens, "rotate", "replace a token; the old one keeps working for the overlap")
    rotate.add_argument("--name", required=True, help="the token to rotate")
    rotate.add_argument(
        "--overlap-seconds",
        type=float,
        default=600.0,
        help="how long the old token stays valid (default: %(default)g; 0 ends it at once)",
    )
    revoke = _command(tokens, "revoke", "revoke the token with this name")
    revoke.add_argument("name")
    p.set_defaults(func=cmd_token)

    p = _command(sub, "push", "push notification tools")
    push = p.add_subparsers(dest="push_command", required=True, metavar="ACTION")
    vapid = _command(push, "vapid-keys", "generate a VAPID key pair for Web Push (public key on the last line)")
    vapid.add_argument("--out", help="write the private key (PEM) to this new file instead of printing it")
    p.set_defaults(func=cmd_push)

    url_help = "the service's base URL (default: %(default)s, or TICKER_URL)"
    default_url = os.environ.get("TICKER_URL", f"http://127.0.0.1:{settings.port}")
    p = _command(sub, "publish", "publish a flash through the HTTP API")
    p.add_argument("headline", help="one line of plain text, up to 280 characters")
    p.add_argument("--lang", required=True, help="BCP 47 language tag: en, ar, es, ...")
    p.add_argument("--category", required=True, help=f"one of: {', '.join(settings.categories)}")
    p.add_argument("--urgency", type=int, default=5, help="IPTC urgency 1 (highest) to 9 (default: 5)")
    p.add_argument("--region", action="append", help="a region (repeat for several): " + ", ".join(settings.regions))
    p.add_argument("--link", help="link to the full story (http/https)")
    p.add_argument("--source", help="who the information comes from")
    p.add_argument("--story", help="story id shared by the language versions of one alert ([A-Za-z0-9_-], ≤ 64)")
    p.add_argument("--embargo", help="RFC 3339 instant to publish at (e.g. 2026-05-04T09:00:00Z), at most 7 days ahead")
    p.add_argument("--idempotency-key", help="retry-safe key: the same key publishes at most once (default: a new one)")
    p.add_argument("--retries", type=int, default=5, help="retries on 503 or a dropped connection (default: 5)")
    p.add_argument("--token", help="editor token (default: TICKER_TOKEN)")
    p.add_argument("--server", dest="server", default=default_url, help=url_help)
    p.set_defaults(func=cmd_publish)

    p = _command(sub, "withdraw", "withdraw (kill) a flash: off tickers, lists, resumes and notification shades")
    p.add_argument("flash_id", help="the flash's id (the last part of its uri)")
    p.add_argument("--retries", type=int, default=5, help="retries on 503 or a dropped connection (default: 5)")
    p.add_argument("--token", help="editor token (default: TICKER_TOKEN)")
    p.add_argument("--server", dest="server", default=default_url, help=url_help)
    p.set_defaults(func=cmd_withdraw)

    p = _command(sub, "tail", "follow flashes live and print each event as it arrives")
    p.add_argument(
        "--lang", help="languages, comma-separated (en also matches en-GB); two or more: one version per story"
    )
    p.add_argument("--category", help="categories, comma-separated")
    p.add_argument("--region", help="regions, comma-separated")
    p.add_argument("--max-urgency", type=int, help="only urgency 1..N")
    p.add_argument("--server", dest="server", default=default_url, help=url_help)
    p.set_defaults(func=cmd_tail)
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = Settings()
    from .ops.logs import configure
    from .ops.multiproc import ensure_dir

    configure(settings.log_level)
    ensure_dir()
    args = build_parser(settings).parse_args(argv)
    return int(args.func(args, settings))


if __name__ == "__main__":
    sys.exit(main())
