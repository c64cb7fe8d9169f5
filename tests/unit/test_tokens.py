"""Editor tokens (``security/tokens.py``) in both stores, without a hub: a file in a temporary data directory and a
hash on the real redis-server fixture. Tokens are shown once and stored only as SHA-256; a rotation keeps the old
token for its overlap; a revoked one is gone."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from ticker_service.errors import BrokerUnavailable
from ticker_service.keys import EDITOR_TOKEN_DIGESTS, EDITOR_TOKENS
from ticker_service.security import tokens
from ticker_service.security.tokens import (
    EDITOR_SCOPES,
    PREFIX,
    Desk,
    FileTokenStore,
    RedisTokenStore,
    TokenStore,
    digest,
)

from ..support.processes import RedisServer, free_port


@pytest.fixture(params=["file", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TokenStore]:
    if request.param == "file":
        yield FileTokenStore(tmp_path / "data")
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    async with Redis(port=server.port) as redis:
        await redis.flushdb()
        yield RedisTokenStore(redis)


async def stored_text(store: TokenStore) -> str:
    """Everything the store keeps, as text: the file, or every Redis hash with its fields ("" if nothing yet)."""
    if isinstance(store, FileTokenStore):
        return store.path.read_text() if store.path.exists() else ""
    assert isinstance(store, RedisTokenStore)
    kept = {}
    for key in await store.redis.keys("*"):
        fields = await store.redis.hgetall(key)  # type: ignore[misc]
        kept[key.decode()] = {name.decode(): value.decode() for name, value in fields.items()}
    return json.dumps(kept) if kept else ""


async def records(store: TokenStore) -> dict[str, dict[str, Any]]:
    """The stored record of each token name (in Redis: the one hash's fields)."""
    text = await stored_text(store)
    if not text:
        return {}
    stored = json.loads(text)
    if isinstance(store, RedisTokenStore):  # the records' hash (the other one indexes their digests)
        stored = {name: json.loads(record) for name, record in stored[EDITOR_TOKENS].items()}
    return stored  # type: ignore[no-any-return]


class Later:
    """``time`` as the token module sees it, ``seconds`` from now (an overlap ends without waiting for it)."""

    def __init__(self, seconds: float) -> None:
        self.offset = seconds

    def time(self) -> float:
        return time.time() + self.offset


async def test_a_created_token_authenticates_as_its_editor(store: TokenStore) -> None:
    token = await store.create("desk-a")
    assert token.startswith(PREFIX) and len(token) > len(PREFIX) + 30
    editor = await store.authenticate(token)
    assert editor is not None
    assert (editor.name, editor.token_hash, editor.scopes, editor.desk) == (
        "desk-a",
        digest(token),
        EDITOR_SCOPES,
        Desk(),
    )
    assert await store.authenticate(token + "x") is None
    assert await store.authenticate(PREFIX + "nothing-like-it") is None


async def test_tokens_are_stored_only_as_their_sha256(store: TokenStore) -> None:
    first, second = await store.create("desk-a"), await store.create("desk-b", frozenset({"admin"}))
    kept = await stored_text(store)
    for token in (first, second):
        assert token not in kept
        assert token.removeprefix(PREFIX) not in kept
        assert digest(token) in kept
    assert await store.authenticate(digest(first)) is None  # the hash is not a token
    if isinstance(store, FileTokenStore):
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


async def test_scopes_and_desk_are_kept_in_lower_case(store: TokenStore) -> None:
    token = await store.create("sport-es", frozenset({"publish"}), Desk(("ES",), ("Sports",)))
    editor = await store.authenticate(token)
    assert editor is not None
    assert editor.scopes == frozenset({"publish"})
    assert editor.desk == Desk(("es",), ("sports",))


async def test_an_unknown_scope_is_refused_and_nothing_is_stored(store: TokenStore) -> None:
    with pytest.raises(ValueError, match="unknown scopes \\['root'\\]"):
        await store.create("desk-a", frozenset({"publish", "root"}))
    assert await records(store) == {}


async def test_creating_a_name_again_replaces_its_token(store: TokenStore) -> None:
    old = await store.create("desk-a")
    new = await store.create("desk-a")
    assert await store.authenticate(old) is None
    assert (await store.authenticate(new)) is not None


async def test_a_rotated_token_keeps_the_old_one_for_its_overlap_and_the_editor_s_id(
    store: TokenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await store.create("desk-a", frozenset({"publish", "correct"}), Desk(("en",)))
    new = await store.rotate("desk-a", overlap_seconds=60)
    assert new is not None and new != old
    before, after = await store.authenticate(old), await store.authenticate(new)
    assert before is not None and after is not None
    assert before == after  # same name, scopes, desk, and the first token's hash as a stable id
    assert after.token_hash == digest(old)
    assert digest(new) in await stored_text(store)

    monkeypatch.setattr(tokens, "time", Later(61))
    assert await store.authenticate(old) is None
    assert await store.authenticate(new) == after


async def test_a_rotation_without_overlap_ends_the_old_token_at_once(store: TokenStore) -> None:
    old = await store.create("desk-a")
    new = await store.rotate("desk-a", overlap_seconds=0)
    assert new is not None
    assert await store.authenticate(old) is None
    assert await store.authenticate(new) is not None


async def test_rotating_twice_keeps_only_overlaps_still_running(
    store: TokenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await store.create("desk-a")
    second = await store.rotate("desk-a", overlap_seconds=10)
    monkeypatch.setattr(tokens, "time", Later(20))  # the first token's overlap is over before the second rotation
    third = await store.rotate("desk-a", overlap_seconds=60)
    assert second is not None and third is not None
    assert await store.authenticate(first) is None
    assert await store.authenticate(second) is not None
    record = (await records(store))["desk-a"]
    assert [p["sha256"] for p in record["previous"]] == [digest(second)]
    assert record["sha256"] == digest(third)


async def test_rotating_or_revoking_an_unknown_name_changes_nothing(store: TokenStore) -> None:
    token = await store.create("desk-a")
    assert await store.rotate("nobody", overlap_seconds=60) is None
    assert await store.revoke("nobody") is False
    assert await store.authenticate(token) is not None


async def test_a_revoked_token_is_gone_with_its_overlap(store: TokenStore) -> None:
    old = await store.create("desk-a")
    new = await store.rotate("desk-a", overlap_seconds=60)
    other = await store.create("desk-b")
    assert new is not None
    assert await store.revoke("desk-a") is True
    assert await store.authenticate(new) is None
    assert await store.authenticate(old) is None
    assert await store.authenticate(other) is not None
    assert await store.revoke("desk-a") is False


async def test_a_file_store_with_no_file_yet_knows_no_token(tmp_path: Path) -> None:
    assert await FileTokenStore(tmp_path / "absent").authenticate(PREFIX + "x") is None


async def test_redis_down_is_broker_unavailable_not_an_unknown_token() -> None:
    async with Redis(port=free_port(), socket_connect_timeout=1) as redis:
        with pytest.raises(BrokerUnavailable):
            await RedisTokenStore(redis).authenticate(PREFIX + "x")


async def test_a_write_is_counted_with_the_lookup_only_for_a_token_with_its_scope(store: TokenStore) -> None:
    """Redis counts the token's writes this minute in the lookup's round trip; the file store leaves it to the
    caller. A token without the scope is not counted (it gets a 403, which is no write)."""
    writer = await store.create("writer")
    reader = await store.create("reader", frozenset({"approve"}))
    counts = [await store.authenticate_write(writer, "publish") for _ in range(2)]
    assert [editor.name if editor else None for editor, _ in counts] == ["writer", "writer"]
    refused, uncounted = await store.authenticate_write(reader, "publish")
    assert refused is not None and refused.name == "reader" and uncounted is None
    assert await store.authenticate_write(PREFIX + "unknown", "publish") == (None, None)
    if isinstance(store, RedisTokenStore):
        assert [counted[0] for _, counted in counts if counted] == [1, 2]
        assert 0 < counts[0][1][1] <= 60  # type: ignore[index]
    else:
        assert [counted for _, counted in counts] == [None, None]


async def test_a_token_stored_before_the_digest_index_is_found_and_then_indexed(redis_server: RedisServer) -> None:
    async with Redis(port=redis_server.port) as redis:
        await redis.flushdb()
        store = RedisTokenStore(redis)
        token = await store.create("old-desk")
        await redis.delete(EDITOR_TOKEN_DIGESTS)  # as a store written before the index existed
        editor, counted = await store.authenticate_write(token, "publish")
        assert editor is not None and editor.name == "old-desk" and counted is None  # found by a scan
        assert await redis.hget(EDITOR_TOKEN_DIGESTS, digest(token)) == b"old-desk"  # type: ignore[misc]
        editor, counted = await store.authenticate_write(token, "publish")
        assert editor is not None and counted is not None  # found by its digest now, and counted with it


async def test_a_revoked_or_rotated_tokens_digest_leaves_the_index(redis_server: RedisServer) -> None:
    async with Redis(port=redis_server.port) as redis:
        await redis.flushdb()
        store = RedisTokenStore(redis)
        first = await store.create("desk")
        second = await store.rotate("desk", 0)
        assert second is not None
        assert await redis.hkeys(EDITOR_TOKEN_DIGESTS) == [digest(second).encode()]  # type: ignore[misc]
        assert await store.authenticate(first) is None
        await store.revoke("desk")
        assert await redis.hlen(EDITOR_TOKEN_DIGESTS) == 0  # type: ignore[misc]
        assert await store.authenticate(second) is None
