// The connection logic of clients/js/ticker.js with stand-ins for the browser's WebSocket and EventSource that
// record what the client does; timers are Node's mock timers, so backoff waits are checked without sleeping.
import assert from "node:assert/strict";
import { afterEach, beforeEach, mock, test } from "node:test";

class FakeWebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 3;
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = FakeWebSocket.CONNECTING;
    this.sent = [];
    FakeWebSocket.all.push(this);
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close() {
    this.readyState = FakeWebSocket.CLOSED;
  }
  // what the network does
  accept() {
    this.readyState = FakeWebSocket.OPEN;
    this.onopen?.({});
  }
  deliver(message) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
  drop(code, reason = "") {
    this.readyState = FakeWebSocket.CLOSED;
    this.onclose?.({ code, reason });
  }
}

class FakeEventSource {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 2;
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = FakeEventSource.CONNECTING;
    this.listeners = new Map();
    FakeEventSource.all.push(this);
  }
  addEventListener(type, listener) {
    this.listeners.set(type, [...(this.listeners.get(type) || []), listener]);
  }
  close() {
    this.readyState = FakeEventSource.CLOSED;
  }
  accept() {
    this.readyState = FakeEventSource.OPEN;
    this.onopen?.({});
  }
  deliver(type, id, data) {
    for (const listener of this.listeners.get(type) || []) listener({ data: JSON.stringify(data), lastEventId: id });
  }
  fail(readyState) {
    this.readyState = readyState;
    this.onerror?.({});
  }
}

globalThis.WebSocket = FakeWebSocket;
globalThis.EventSource = FakeEventSource;
const { connect } = await import("../../clients/js/ticker.js");

const flash = (id) => ({ uri: `urn:ticker:flash:${id}`, version: "1", headlines: [{ value: id }] });

function started(options = {}) {
  const client = connect({ url: "http://hub.test", lang: "en", storage: null, ...options });
  const log = [];
  for (const type of ["flash", "update", "withdraw", "reset", "status"]) {
    client.addEventListener(type, (event) => log.push([type, event.detail]));
  }
  return { client, log };
}

const states = (log) => log.filter(([type]) => type === "status").map(([, detail]) => detail.state);
const flashes = (log) => log.filter(([type]) => type === "flash").map(([, detail]) => detail.eventId);
const settle = () => new Promise((resolve) => queueMicrotask(resolve));

beforeEach(() => {
  FakeWebSocket.all = [];
  FakeEventSource.all = [];
  mock.timers.enable({ apis: ["setTimeout"] });
  mock.method(Math, "random", () => 0.5);
});

afterEach(() => {
  mock.timers.reset();
  mock.restoreAll();
});

test("WebSocket first, with the filter and the resume point in the URL", async () => {
  const { client } = started({ lastEventId: "e1-10-0", category: "politics", maxUrgency: 2 });
  await settle();
  assert.equal(FakeWebSocket.all.length, 1);
  assert.equal(FakeWebSocket.all[0].url, "ws://hub.test/v1/stream?lang=en&category=politics&max_urgency=2&last_event_id=e1-10-0");
  client.close();
});

test("a WebSocket that never opens falls back to SSE, which resumes from the last event and drops duplicates", async () => {
  const { client, log } = started({ lastEventId: "e1-10-0" });
  await settle();
  FakeWebSocket.all[0].drop(1006);
  assert.equal(states(log).at(-1), "reconnecting");
  mock.timers.tick(250); // attempt 1: up to 500 ms, Math.random() = 0.5
  assert.equal(FakeEventSource.all.length, 1);
  const source = FakeEventSource.all[0];
  assert.equal(source.url, "http://hub.test/v1/events?lang=en&last_event_id=e1-10-0");
  source.accept();
  source.deliver("flash", "e1-11-0", flash("a"));
  source.deliver("flash", "e1-11-0", flash("a"));
  source.deliver("flash", "e1-9-0", flash("old"));
  source.deliver("flash", "e1-12-0", flash("b"));
  assert.deepEqual(flashes(log), ["e1-11-0", "e1-12-0"]);
  assert.equal(client.transport, "sse");
  assert.equal(states(log).at(-1), "live");
  client.close();
});

test("a hub restart (1012 with a retry hint) reconnects over WebSocket no sooner than the hint, from the last event", async () => {
  const { client, log } = started();
  await settle();
  const ws = FakeWebSocket.all[0];
  ws.accept();
  ws.deliver({ type: "flash", event_id: "e1-20-0", flash: flash("a") });
  ws.drop(1012, "service restart; resume with last_event_id; retry=3000");
  mock.timers.tick(2999);
  assert.equal(FakeWebSocket.all.length, 1, "waits for the server's hint");
  mock.timers.tick(1);
  assert.equal(FakeWebSocket.all.length, 2);
  assert.match(FakeWebSocket.all[1].url, /last_event_id=e1-20-0$/);
  assert.equal(FakeEventSource.all.length, 0, "a WebSocket that worked is kept");
  assert.deepEqual(log.find(([type, d]) => type === "status" && d.delay)[1].delay, 3000);
  client.close();
});

test("backoff grows while the hub stays away, and resets once a connection opens", async () => {
  const { client, log } = started({ transport: "ws" });
  await settle();
  const delays = [];
  for (let n = 0; n < 5; n += 1) {
    FakeWebSocket.all.at(-1).drop(1006);
    delays.push(log.at(-1)[1].delay);
    mock.timers.tick(log.at(-1)[1].delay);
  }
  assert.deepEqual(delays, [250, 500, 1000, 2000, 4000]);
  FakeWebSocket.all.at(-1).accept();
  FakeWebSocket.all.at(-1).drop(1006);
  assert.equal(log.at(-1)[1].delay, 250);
  client.close();
});

test("a terminal close code (bad filter) stops for good", async () => {
  const { client, log } = started();
  await settle();
  FakeWebSocket.all[0].accept();
  FakeWebSocket.all[0].drop(1008, "bad message: max_urgency must be an integer from 1 to 9");
  mock.timers.tick(60000);
  assert.equal(FakeWebSocket.all.length, 1);
  assert.equal(FakeEventSource.all.length, 0);
  const last = log.at(-1)[1];
  assert.equal(last.state, "closed");
  assert.equal(last.terminal, true);
  assert.equal(client.state, "closed");
});

test("a filter change is one subscribe message on the open WebSocket", async () => {
  const { client } = started();
  await settle();
  FakeWebSocket.all[0].accept();
  client.setFilter({ lang: "es", region: "latin-america", maxUrgency: 3 });
  assert.equal(FakeWebSocket.all.length, 1);
  assert.deepEqual(FakeWebSocket.all[0].sent, [{ type: "subscribe", lang: "es", region: "latin-america", max_urgency: "3" }]);
  client.close();
});

test("over SSE, a filter change reopens the stream from the same position", async () => {
  const { client } = started({ transport: "sse" });
  await settle();
  FakeEventSource.all[0].accept();
  FakeEventSource.all[0].deliver("flash", "e1-5-0", flash("a"));
  client.setFilter({ lang: "ar" });
  assert.equal(FakeEventSource.all[0].readyState, FakeEventSource.CLOSED);
  assert.equal(FakeEventSource.all[1].url, "http://hub.test/v1/events?lang=ar&last_event_id=e1-5-0");
  client.close();
});

test("an SSE stream the hub ended is left to the browser's own reconnect (retry:, Last-Event-ID) once", async () => {
  const { client, log } = started({ transport: "sse" });
  await settle();
  const source = FakeEventSource.all[0];
  source.accept();
  source.fail(FakeEventSource.CONNECTING);
  assert.equal(FakeEventSource.all.length, 1, "no second EventSource: the browser retries by itself");
  assert.equal(log.at(-1)[1].native, true);
  source.fail(FakeEventSource.CONNECTING); // that retry failed too: the client's backoff takes over
  assert.equal(source.readyState, FakeEventSource.CLOSED);
  mock.timers.tick(250);
  assert.equal(FakeEventSource.all.length, 2);
  client.close();
});

test("a reset moves the resume point to the reset's event id and hands over the current flashes", async () => {
  const { client, log } = started({ lastEventId: "old-1-0" });
  await settle();
  const ws = FakeWebSocket.all[0];
  ws.accept();
  ws.deliver({ type: "reset", event_id: "new-7-0", flashes: [flash("x")] });
  ws.deliver({ type: "flash", event_id: "new-6-0", flash: flash("stale") });
  ws.deliver({ type: "flash", event_id: "new-8-0", flash: flash("y") });
  assert.deepEqual(log.find(([type]) => type === "reset")[1], { eventId: "new-7-0", flashes: [flash("x")] });
  assert.deepEqual(flashes(log), ["new-8-0"]);
  assert.equal(client.lastEventId, "new-8-0");
  client.close();
});

test("a language preference goes out in order, and a replacing update keeps `replaces` over SSE", async () => {
  const { client, log } = started({ lang: ["ar", "en"], transport: "sse" });
  await settle();
  const source = FakeEventSource.all[0];
  assert.equal(source.url, "http://hub.test/v1/events?lang=ar%2Cen");
  source.accept();
  source.deliver("flash", "e1-11-0", flash("en"));
  source.deliver("update", "e1-12-0", { flash: flash("ar"), replaces: "urn:ticker:flash:en" });
  const updates = log.filter(([type]) => type === "update").map(([, detail]) => detail);
  assert.deepEqual(updates, [{ eventId: "e1-12-0", flash: flash("ar"), replaces: "urn:ticker:flash:en" }]);
  client.close();
});
