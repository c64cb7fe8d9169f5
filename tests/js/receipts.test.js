// clients/js/receipts.js: which readers report (the sample is decided once per reader), what a receipt says, and
// that each flash version is reported once.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Receipts, clampRate } from "../../clients/js/receipts.js";

const flash = (id, version = "1", extra = {}) => ({ uri: `urn:ticker:flash:${id}`, version, ...extra });
const clock = (iso) => () => new Date(iso);

function recorder(options) {
  const sent = [];
  const receipts = new Receipts({ base: "https://hub.test/", send: (url, body) => sent.push([url, JSON.parse(body)]), ...options });
  return { receipts, sent };
}

test("a sampled reader reports each version once, with the surface, both times and its rate", () => {
  const { receipts, sent } = recorder({ rate: 0.1, random: () => 0.05, now: clock("2026-12-01T10:00:01.500Z") });
  assert.equal(receipts.sampled, true);
  receipts.shown(flash("abc"), "ws", new Date("2026-12-01T10:00:01.250Z"));
  receipts.shown(flash("abc"), "sse"); // the same version again: not reported twice
  receipts.shown(flash("abc", "2"), "sse");
  assert.deepEqual(sent, [
    ["https://hub.test/v1/receipts", { flash: "abc", version: "1", surface: "ws", shown_at: "2026-12-01T10:00:01.250Z", sent_at: "2026-12-01T10:00:01.500Z", rate: 0.1 }],
    ["https://hub.test/v1/receipts", { flash: "abc", version: "2", surface: "sse", shown_at: "2026-12-01T10:00:01.500Z", sent_at: "2026-12-01T10:00:01.500Z", rate: 0.1 }],
  ]);
});

test("a reader outside the sample, a rate of 0 and a withdrawal send nothing", () => {
  assert.equal(recorder({ rate: 0.1, random: () => 0.1 }).receipts.sampled, false);
  const off = recorder({ rate: 0, random: () => 0 });
  off.receipts.shown(flash("a"), "ws");
  assert.deepEqual(off.sent, []);
  const on = recorder({ rate: 1, random: () => 0.99 });
  on.receipts.shown(flash("a", "2", { pubStatus: "canceled" }), "ws");
  assert.deepEqual(on.sent, []);
});

test("rates are clamped to what the hub accepts", () => {
  assert.equal(clampRate(0.001), 0.01);
  assert.equal(clampRate(5), 1);
  assert.equal(clampRate(-1), 0);
  assert.equal(clampRate("x"), 0);
  assert.equal(clampRate(0.25), 0.25);
});
