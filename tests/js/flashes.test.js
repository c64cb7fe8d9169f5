import assert from "node:assert/strict";
import { test } from "node:test";

import { FlashBoard, directionOf, flashId, isCorrected, isHeld, safeLink } from "../../clients/js/flashes.js";

let clock = 0;
function doc(id, { version = "1", created = ++clock, ...rest } = {}) {
  return {
    uri: `urn:ticker:flash:${id}`,
    version,
    firstCreated: new Date(1_700_000_000_000 + created * 1000).toISOString(),
    pubStatus: "usable",
    urgency: 3,
    headlines: [{ role: "main", value: `headline ${id} v${version}` }],
    ...rest,
  };
}

test("newest first, and the same flash applied twice shows once", () => {
  const board = new FlashBoard();
  const a = doc("a");
  const b = doc("b");
  assert.equal(board.apply("flash", a), "added");
  assert.equal(board.apply("flash", b), "added");
  assert.equal(board.apply("flash", a), null);
  assert.deepEqual(board.items().map(flashId), ["b", "a"]);
});

test("a snapshot and the live events after it overlap without a flash shown twice", () => {
  const board = new FlashBoard();
  const a = doc("a");
  const b = doc("b");
  board.load([b, a]);
  assert.equal(board.apply("flash", b), null);
  assert.deepEqual(board.items().map(flashId), ["b", "a"]);
});

test("a correction replaces in place; an older version arriving late changes nothing", () => {
  const board = new FlashBoard();
  const v1 = doc("a");
  board.apply("flash", v1);
  board.apply("flash", doc("b"));
  const v2 = { ...v1, version: "2", genres: [{ name: "Correction", literal: "correction" }] };
  assert.equal(board.apply("update", v2), "replaced");
  assert.equal(board.apply("flash", v1), null);
  assert.deepEqual(board.items().map(flashId), ["b", "a"], "the corrected flash keeps its place");
  assert.equal(board.items()[1].version, "2");
  assert.ok(isCorrected(board.items()[1]));
  assert.ok(!isCorrected(v1));
});

test("a withdrawal removes the flash, and a late replay of it does not bring it back", () => {
  const board = new FlashBoard();
  const a = doc("a");
  board.apply("flash", a);
  assert.equal(board.apply("withdraw", { ...a, version: "2", pubStatus: "canceled" }), "removed");
  assert.equal(board.apply("flash", a), null);
  board.load([a]);
  assert.deepEqual(board.items(), []);
});

test("expired flashes leave, and are not added", () => {
  let now = 1_800_000_000_000;
  const board = new FlashBoard({ now: () => now });
  const soon = doc("soon", { expires: new Date(now + 60_000).toISOString() });
  assert.equal(board.apply("flash", soon), "added");
  assert.equal(board.apply("flash", doc("past", { expires: new Date(now - 1).toISOString() })), null);
  now += 61_000;
  assert.deepEqual(board.expire(), ["soon"]);
  assert.deepEqual(board.items(), []);
});

test("the bar keeps only the newest `limit` flashes", () => {
  const board = new FlashBoard({ limit: 3 });
  for (const id of ["a", "b", "c", "d"]) board.apply("flash", doc(id));
  assert.deepEqual(board.items().map(flashId), ["d", "c", "b"]);
  assert.equal(board.apply("flash", doc("old", { created: -5 })), null, "older than everything shown");
});

test("a reset's snapshot replaces the board", () => {
  const board = new FlashBoard();
  board.apply("flash", doc("a"));
  board.load([doc("z")]);
  assert.deepEqual(board.items().map(flashId), ["z"]);
});

test("only absolute http(s) story URLs become links", () => {
  const link = (uri) => safeLink({ associations: [{ rel: "story", uri }] });
  assert.equal(link("https://news.example/story?id=1"), "https://news.example/story?id=1");
  assert.equal(link("http://news.example/"), "http://news.example/");
  assert.equal(link("javascript:alert(1)"), null);
  assert.equal(link("JavaScript:alert(1)"), null);
  assert.equal(link(" javascript:alert(1)"), null);
  assert.equal(link("data:text/html,<script>alert(1)</script>"), null);
  assert.equal(link("/relative/path"), null);
  assert.equal(link("vbscript:msgbox"), null);
  assert.equal(safeLink({}), null);
  assert.equal(safeLink({ associations: [{ uri: 42 }] }), null);
});

test("Arabic, Hebrew, Persian and Urdu are right to left; English and Spanish are not", () => {
  for (const lang of ["ar", "ar-EG", "he", "fa", "ur"]) assert.equal(directionOf(lang), "rtl", lang);
  for (const lang of ["en", "es", "en-GB", "", null]) assert.equal(directionOf(lang), "ltr", String(lang));
});

test("a replacing update shows the better version of a story instead, and the next best comes back", () => {
  const board = new FlashBoard();
  const en = doc("en");
  const ar = doc("ar");
  assert.equal(board.apply("flash", en), "added");
  assert.equal(board.apply("update", ar, en.uri), "replaced");
  assert.deepEqual(board.items().map(flashId), ["ar"]);
  // ar withdrawn: en, as it was, takes its place again.
  assert.equal(board.apply("update", en, ar.uri), "replaced");
  assert.deepEqual(board.items().map(flashId), ["en"]);
  assert.equal(board.apply("update", en, ar.uri), null);
});

test("a held flash leaves the board until its release; with keepHeld it stays, marked held", () => {
  const a = doc("a");
  const held = { ...a, version: "2", pubStatus: "withheld" };
  const released = { ...a, version: "3", pubStatus: "usable" };
  const board = new FlashBoard();
  board.apply("flash", a);
  assert.equal(board.apply("hold", held), "removed");
  assert.equal(board.apply("flash", a), null, "a late replay of the first version does not bring it back");
  assert.equal(board.apply("update", released), "added");
  const dim = new FlashBoard({ keepHeld: true });
  dim.apply("flash", a);
  assert.equal(dim.apply("hold", held), "replaced");
  assert.ok(isHeld(dim.items()[0]));
  assert.equal(dim.apply("update", released), "replaced");
  assert.ok(!isHeld(dim.items()[0]));
});
