// Reconnect timing for the browser client: exponential backoff with full jitter, floored by the server's hint.
// Pure functions, no DOM, so that Node's test runner can check them (tests/js/).

// The hub's WebSocket close codes by range (its table: ticker_service/transports/close.py; the README's "Close
// codes"). The same rules as the Python client's close_rule.
/** RFC 6455 codes after which retrying the same subscription cannot help: the request or a message was wrong. */
export const TERMINAL_CODES = new Set([1003, 1007, 1008, 1009]);
/** Reconnect only with fresh credentials (4401: the reader token expired), inclusive bounds. */
export const REFRESH_RANGE = [4400, 4499];
/** The hub's own terminal codes, inclusive bounds. Anything else (1001, 1006, 1011, 1012, 4000–4399): reconnect. */
export const TERMINAL_RANGE = [4500, 4999];

/**
 * Milliseconds to wait before reconnect `attempt` (1, 2, ...): uniform in [0, min(cap, base·2^attempt)].
 * With a server hint (`retry=<ms>` in a WebSocket close reason) the wait is at least the hint.
 * @param {number} attempt
 * @param {{base?: number, cap?: number, hint?: number | null, random?: () => number}} [options]
 * @returns {number}
 */
export function backoffDelay(attempt, { base = 250, cap = 20000, hint = null, random = Math.random } = {}) {
  const ceiling = Math.min(cap, base * 2 ** Math.max(0, attempt));
  const wait = random() * ceiling;
  return hint != null && hint > wait ? hint : wait;
}

/**
 * The reconnect hint the hub puts at the end of a close reason ("...; retry=2500"), in milliseconds.
 * @param {string | undefined | null} reason
 * @returns {number | null}
 */
export function hintFromReason(reason) {
  const match = /retry=(\d{1,7})/.exec(reason || "");
  return match ? Number(match[1]) : null;
}

/**
 * What a WebSocket close code asks of the client, by its range.
 * @param {number} code
 * @returns {"reconnect" | "refresh" | "terminal"}
 */
export function closeRule(code) {
  if (TERMINAL_CODES.has(code) || (code >= TERMINAL_RANGE[0] && code <= TERMINAL_RANGE[1])) return "terminal";
  if (code >= REFRESH_RANGE[0] && code <= REFRESH_RANGE[1]) return "refresh";
  return "reconnect";
}

/**
 * Whether a WebSocket close code means "do not come back with the same request". A browser holds no token of
 * its own: after a "refresh" code it reconnects, and the page's credentials (its reader session) go with it.
 * @param {number} code
 */
export function isTerminalClose(code) {
  return closeRule(code) === "terminal";
}

/**
 * The transport to try next. A transport that opened is kept; one that never opened (a proxy that refuses
 * WebSocket upgrades, a hub that is down) gives way to the other, so a blocked WebSocket falls back to SSE and a
 * hub that was down gets its WebSocket back.
 * @param {"ws" | "sse"} tried
 * @param {boolean} opened
 * @returns {"ws" | "sse"}
 */
export function nextTransport(tried, opened) {
  if (opened) return tried;
  return tried === "ws" ? "sse" : "ws";
}
