// The browser client: follow flashes over WebSocket, or Server-Sent Events where WebSocket is blocked, through
// disconnects and hub restarts, resuming by event id so that every flash arrives once, in order.
//
//   import { connect } from "https://ticker.example/static/js/ticker.js";
//   const ticker = connect({ lang: "en", category: "politics" });
//   ticker.addEventListener("flash", (e) => show(e.detail.flash));
//
// Time to screen: 1 reader in 10 (`receiptRate`, 0 turns it off) reports when each flash version arrived
// (POST /v1/receipts, see receipts.js); with `autoReceipts: false` the page reports itself when it shows one
// (`ticker.receipts.shown(flash, ticker.transport)`), as <breaking-ticker> does.
//
// Events (CustomEvent, data in `detail`): `flash`, `update`, `withdraw`, `hold` ({eventId, flash}; a held flash
// is off the air while the desk checks it: hide it until an `update` releases it), `reset`
// ({eventId, flashes}: the history could not fill a gap, here is the current state), and `status`
// ({state: "connecting" | "live" | "reconnecting" | "closed", transport, delay?, reason?, terminal?}).
//
// Two languages or more (`lang: "ar,en"` or `lang: ["ar", "en"]`) are an order of preference: of each story the
// reader gets one version, and an `update` whose detail has `replaces` (the uri of the version it had) brings a
// better one, or the next best after a withdrawal: show `flash` instead of the flash `replaces` names.

import { backoffDelay, hintFromReason, isTerminalClose, nextTransport } from "./backoff.js";
import { Receipts, DEFAULT_RATE } from "./receipts.js";
import { ResumePoint, storageKey } from "./resume.js";

/**
 * @typedef {object} Filter
 * @property {string | string[]} [lang]  language tags, comma-separated or a list ("en" also matches "en-GB");
 *                                       two or more are an order of preference between versions of a story
 * @property {string} [category]  categories, comma-separated
 * @property {string} [region]    regions, comma-separated
 * @property {number} [maxUrgency] 1 (flashes only) to 9 (everything)
 */

/**
 * @typedef {Filter & {
 *   url?: string,
 *   lastEventId?: string | null,
 *   transport?: "auto" | "ws" | "sse",
 *   storage?: import("./resume.js").KeyValueStore | null,
 *   maxDelay?: number,
 *   receiptRate?: number,
 *   autoReceipts?: boolean,
 * }} ConnectOptions
 */

/** The query string of a filter, in a fixed order (it is also part of the resume key). @param {Filter} filter */
export function filterQuery(filter) {
  const params = new URLSearchParams();
  for (const [name, value] of [
    ["lang", filter.lang],
    ["category", filter.category],
    ["region", filter.region],
    ["max_urgency", filter.maxUrgency],
  ]) {
    if (value !== undefined && value !== null && value !== "") params.set(name, String(value));
  }
  return params.toString();
}

function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null; // a sandboxed frame may not touch storage at all
  }
}

export class TickerConnection extends EventTarget {
  /** @param {ConnectOptions} [options] */
  constructor(options = {}) {
    super();
    const base = new URL(options.url ?? "/", globalThis.location?.href);
    this.base = base.href.replace(/\/+$/, "");
    /** @type {Filter} */
    this.filter = pickFilter(options);
    this.mode = options.transport ?? "auto";
    /** @type {"ws" | "sse"} */
    this.transport = this.mode === "sse" ? "sse" : "ws";
    this.maxDelay = options.maxDelay ?? 20000;
    this.receipts = new Receipts({ base: this.base, rate: options.receiptRate ?? DEFAULT_RATE });
    this.autoReceipts = options.autoReceipts ?? true;
    this.resume = new ResumePoint({
      storage: options.storage === undefined ? defaultStorage() : options.storage,
      key: storageKey(this.base, filterQuery(this.filter)),
      lastEventId: options.lastEventId ?? null,
    });
    /** @type {"connecting" | "live" | "reconnecting" | "closed"} */
    this.state = "connecting";
    /** @type {WebSocket | EventSource | null} */
    this.socket = null;
    this.attempt = 0;
    this.timer = 0;
    this.closed = false;
    // Back online while waiting out a backoff: try at once rather than at the end of the wait.
    this.onOnline = () => this.state !== "live" && this.reconnectNow();
    globalThis.addEventListener?.("online", this.onOnline);
    queueMicrotask(() => this.open());
  }

  /** The id of the last event received: where this reader resumes. */
  get lastEventId() {
    return this.resume.lastEventId;
  }

  /**
   * Change what this reader follows. Over WebSocket it is one `subscribe` message on the open connection; over
   * SSE the stream is reopened from the same position. Flashes published earlier that match only the new filter
   * are not replayed: load them with GET /v1/flashes.
   * @param {Filter} filter
   */
  setFilter(filter) {
    this.filter = pickFilter(filter);
    this.resume.rekey(storageKey(this.base, filterQuery(this.filter)));
    const socket = this.socket;
    if (socket instanceof WebSocket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "subscribe", ...Object.fromEntries(new URLSearchParams(filterQuery(this.filter))) }));
      return;
    }
    this.reconnectNow();
  }

  /** Stop for good. */
  close() {
    this.closed = true;
    clearTimeout(this.timer);
    globalThis.removeEventListener?.("online", this.onOnline);
    this.drop();
    this.setState("closed", {});
  }

  // -- connections ------------------------------------------------------------------------------------------
  open() {
    if (this.closed) return;
    this.setState(this.attempt ? "reconnecting" : "connecting", {});
    if (this.transport === "ws") this.openWebSocket();
    else this.openEventSource();
  }

  url(path) {
    const query = new URLSearchParams(filterQuery(this.filter));
    if (this.resume.lastEventId) query.set("last_event_id", this.resume.lastEventId);
    return `${this.base}${path}?${query}`;
  }

  openWebSocket() {
    const ws = new WebSocket(this.url("/v1/stream").replace(/^http/, "ws"));
    let opened = false;
    this.socket = ws;
    ws.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.setState("live", {});
    };
    ws.onmessage = (message) => {
      if (this.socket === ws) this.receive(JSON.parse(message.data));
    };
    ws.onclose = (close) => {
      if (this.socket !== ws) return; // replaced or closed on purpose
      this.socket = null;
      if (isTerminalClose(close.code)) {
        this.closed = true;
        this.setState("closed", { terminal: true, reason: `${close.code} ${close.reason}`.trim() });
        return;
      }
      this.retry(opened, hintFromReason(close.reason), close.reason);
    };
  }

  openEventSource() {
    const source = new EventSource(this.url("/v1/events"));
    let opened = false;
    this.socket = source;
    source.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.setState("live", {});
    };
    for (const type of ["flash", "update", "withdraw", "hold", "reset"]) {
      source.addEventListener(type, (message) => {
        if (this.socket !== source) return;
        const data = JSON.parse(message.data);
        const eventId = message.lastEventId;
        if (type === "reset") this.receive({ type, event_id: eventId, flashes: data.flashes });
        // A replacing update's data is {flash, replaces}; any other event's is the flash itself.
        else if (typeof data.replaces === "string" && data.flash) this.receive({ type, event_id: eventId, ...data });
        else this.receive({ type, event_id: eventId, flash: data });
      });
    }
    source.onerror = () => {
      if (this.socket !== source) return;
      if (source.readyState === EventSource.CONNECTING && opened) {
        // The hub ended the stream (restart, slow reader). The browser reconnects by itself after the hub's
        // `retry:` hint and sends Last-Event-ID; if that try fails too, the backoff below takes over.
        opened = false;
        this.setState("reconnecting", { native: true });
        return;
      }
      source.close();
      this.socket = null;
      this.retry(opened, null, "");
    };
  }

  /** @param {boolean} opened @param {number | null} hint @param {string} reason */
  retry(opened, hint, reason) {
    if (this.closed) return;
    if (!opened && this.mode === "auto") this.transport = nextTransport(this.transport, false);
    this.attempt += 1;
    const delay = backoffDelay(this.attempt, { cap: this.maxDelay, hint });
    this.setState("reconnecting", { delay, reason });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(), delay);
  }

  reconnectNow() {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.drop();
    this.open();
  }

  drop() {
    const socket = this.socket;
    this.socket = null;
    socket?.close();
  }

  // -- events -----------------------------------------------------------------------------------------------
  /** @param {{type: string, event_id: string, flash?: object, flashes?: object[], replaces?: string}} event */
  receive(event) {
    if (event.type === "reset") {
      this.resume.move(event.event_id);
      this.emit("reset", { eventId: event.event_id, flashes: event.flashes ?? [] });
      return;
    }
    if (!["flash", "update", "withdraw", "hold"].includes(event.type)) return;
    if (!this.resume.accept(event.event_id)) return; // already seen: a replay overlapping what arrived live
    const detail = { eventId: event.event_id, flash: event.flash };
    if (typeof event.replaces === "string") detail.replaces = event.replaces;
    this.emit(event.type, detail);
    if (this.autoReceipts && event.type !== "withdraw") this.receipts.shown(event.flash, this.transport);
  }

  setState(state, extra) {
    this.state = state;
    this.emit("status", { state, transport: this.transport, ...extra });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** @param {Filter} source @returns {Filter} */
function pickFilter(source) {
  const { lang, category, region, maxUrgency } = source;
  return { lang: Array.isArray(lang) ? lang.join(",") : lang, category, region, maxUrgency };
}

/**
 * Follow flashes from the hub at `url` (default: this page's origin) that match the filter.
 * @param {ConnectOptions} [options]
 * @returns {TickerConnection}
 */
export function connect(options = {}) {
  return new TickerConnection(options);
}
