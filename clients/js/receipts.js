// Time to screen: a reader tells the hub when it showed a flash version (POST /v1/receipts), so the newsroom knows
// how fast readers saw it. Sampled: by default 1 reader in 10 sends receipts, each standing for 1/rate readers.
// navigator.sendBeacon where the page has it (it survives the page closing, and its text/plain body needs no CORS
// preflight), else fetch with keepalive. Nothing about the reader is sent: the flash, its version, the surface and
// two times (when shown, when sent: the hub takes the clock's offset out with them).

import { flashId } from "./flashes.js";

export const DEFAULT_RATE = 0.1;
export const MIN_RATE = 0.01; // the hub's floor: a receipt weighs at most 100 readers
const REMEMBERED = 1000;

/** A sampling rate the hub accepts: 0 (off), or from MIN_RATE to 1. @param {unknown} rate */
export function clampRate(rate) {
  const value = Number(rate);
  if (!Number.isFinite(value) || value <= 0) return 0;
  return Math.min(1, Math.max(MIN_RATE, value));
}

/** POST a receipt body without waiting for the answer. @param {string} url @param {string} body */
export function sendBody(url, body) {
  try {
    if (typeof navigator !== "undefined" && typeof navigator.sendBeacon === "function" && navigator.sendBeacon(url, body)) return;
  } catch {
    // a beacon refused (too much queued): fall back to fetch
  }
  if (typeof fetch !== "function") return;
  fetch(url, { method: "POST", body, keepalive: true, headers: { "Content-Type": "text/plain" } }).catch(() => {});
}

export class Receipts {
  /**
   * @param {{base: string, rate?: number, random?: () => number, send?: (url: string, body: string) => void,
   *   now?: () => Date}} options
   */
  constructor({ base, rate = DEFAULT_RATE, random = Math.random, send = sendBody, now = () => new Date() }) {
    this.url = `${String(base).replace(/\/+$/, "")}/v1/receipts`;
    this.rate = clampRate(rate);
    // Decided once per reader, so that the sample is of readers, not of flashes.
    this.sampled = this.rate > 0 && random() < this.rate;
    this.send = send;
    this.now = now;
    /** @type {Set<string>} flash versions already reported */
    this.sent = new Set();
  }

  /**
   * The reader's screen shows this version of the flash now, on `surface` ("ws" or "sse"): report it once, if this
   * reader is in the sample. Returns the body sent, or null.
   * @param {Record<string, any>} flash @param {string} surface @param {Date} [shownAt]
   */
  shown(flash, surface, shownAt = this.now()) {
    if (!this.sampled || !flash || flash.pubStatus === "canceled") return null;
    const id = flashId(flash);
    const version = String(flash.version);
    const key = `${id}:${version}`;
    if (!id || this.sent.has(key)) return null;
    if (this.sent.size >= REMEMBERED) this.sent.clear();
    this.sent.add(key);
    const body = JSON.stringify({
      flash: id,
      version,
      surface,
      shown_at: shownAt.toISOString(),
      sent_at: this.now().toISOString(),
      rate: this.rate,
    });
    this.send(this.url, body);
    return body;
  }
}
