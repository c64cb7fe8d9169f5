import assert from "node:assert/strict";
import { test } from "node:test";

import { backoffDelay, closeRule, hintFromReason, isTerminalClose, nextTransport } from "../../clients/js/backoff.js";

test("the ceiling doubles per attempt up to the cap, and the wait is the random fraction of it (full jitter)", () => {
  const top = () => 0.999999;
  assert.ok(Math.abs(backoffDelay(1, { base: 250, random: top }) - 500) < 0.01);
  assert.ok(Math.abs(backoffDelay(3, { base: 250, random: top }) - 2000) < 0.01);
  assert.ok(Math.abs(backoffDelay(30, { base: 250, cap: 20000, random: top }) - 20000) < 0.1);
  assert.equal(backoffDelay(5, { random: () => 0 }), 0);
  assert.equal(backoffDelay(2, { base: 100, random: () => 0.5 }), 200);
});

test("delays spread over the whole range, so readers cut off together do not return together", () => {
  const delays = Array.from({ length: 2000 }, () => backoffDelay(4, { base: 250 }));
  assert.ok(Math.min(...delays) >= 0 && Math.max(...delays) <= 4000);
  const low = delays.filter((d) => d < 2000).length;
  assert.ok(low > 800 && low < 1200, `about half below the middle, got ${low}`);
});

test("a server hint is a floor, not a replacement", () => {
  assert.equal(backoffDelay(1, { hint: 3000, random: () => 0.5 }), 3000);
  assert.equal(backoffDelay(10, { hint: 100, random: () => 0.5 }), 20000 * 0.5);
});

test("the hint is read from the end of a close reason", () => {
  assert.equal(hintFromReason("service restart; resume with last_event_id; retry=2750"), 2750);
  assert.equal(hintFromReason("history unavailable"), null);
  assert.equal(hintFromReason(""), null);
  assert.equal(hintFromReason(undefined), null);
});

test("policy violations and bad data are terminal; restarts, slow-reader cut-offs and drops are not", () => {
  for (const code of [1003, 1007, 1008, 1009]) assert.equal(isTerminalClose(code), true, String(code));
  for (const code of [1000, 1001, 1006, 1011, 1012, 1013, 4008]) assert.equal(isTerminalClose(code), false, String(code));
});

test("close codes branch on their range: 4000–4399 reconnect, 4400–4499 need a fresh token, 4500–4999 stop", () => {
  for (const code of [4000, 4008, 4399]) assert.equal(closeRule(code), "reconnect", String(code));
  for (const code of [4400, 4401, 4499]) assert.equal(closeRule(code), "refresh", String(code));
  for (const code of [4500, 4999]) assert.equal(closeRule(code), "terminal", String(code));
  assert.equal(isTerminalClose(4401), false); // a browser reconnects with its page's credentials
});

test("a WebSocket that never opened gives way to SSE, and back; one that opened is kept", () => {
  assert.equal(nextTransport("ws", false), "sse");
  assert.equal(nextTransport("sse", false), "ws");
  assert.equal(nextTransport("ws", true), "ws");
  assert.equal(nextTransport("sse", true), "sse");
});
