// Resume bookkeeping: the last event id a reader saw, kept in sessionStorage so that a reload resumes too,
// and the duplicate/out-of-order check that makes every event count once.

/**
 * @typedef {{getItem(key: string): string | null, setItem(key: string, value: string): void}} KeyValueStore
 */

/**
 * `<epoch>-<ms>-<seq>` → its parts, or null if it is not an event id.
 * @param {string | null | undefined} id
 * @returns {{epoch: string, ms: bigint, seq: bigint} | null}
 */
export function parseEventId(id) {
  const match = /^([a-z0-9]{1,16})-(\d{1,20})-(\d{1,20})$/.exec(id || "");
  return match ? { epoch: match[1], ms: BigInt(match[2]), seq: BigInt(match[3]) } : null;
}

/**
 * Order of two event ids of one history: negative, 0, positive; null when they are from different epochs
 * (the history was lost in between) or either is malformed.
 * @param {string} a
 * @param {string} b
 * @returns {number | null}
 */
export function compareEventIds(a, b) {
  const x = parseEventId(a);
  const y = parseEventId(b);
  if (!x || !y || x.epoch !== y.epoch) return null;
  if (x.ms !== y.ms) return x.ms < y.ms ? -1 : 1;
  if (x.seq !== y.seq) return x.seq < y.seq ? -1 : 1;
  return 0;
}

/** The storage key for a base URL and filter: each distinct subscription resumes on its own. */
export function storageKey(url, query) {
  return `ticker:last-event-id:${url}?${query}`;
}

/** Where a reader is in the history, and which events it has already seen. */
export class ResumePoint {
  /**
   * @param {{storage?: KeyValueStore | null, key?: string, lastEventId?: string | null}} [options]
   */
  constructor({ storage = null, key = "", lastEventId = null } = {}) {
    this.storage = storage;
    this.key = key;
    /** @type {string | null} */
    this.lastEventId = lastEventId ?? readStore(storage, key);
  }

  /**
   * Record `eventId` if it is after the last one; false for a duplicate or an older event (a replay overlap).
   * An id from another epoch is taken: the hub sends a `reset` when the history changed under the reader.
   * @param {string} eventId
   */
  accept(eventId) {
    if (!parseEventId(eventId)) return false;
    if (this.lastEventId) {
      const order = compareEventIds(eventId, this.lastEventId);
      if (order !== null && order <= 0) return false;
    }
    this.move(eventId);
    return true;
  }

  /** Jump to `eventId` whatever it is (a `reset`, a snapshot's `last_event_id`, a changed filter). */
  move(eventId) {
    if (!parseEventId(eventId)) return;
    this.lastEventId = eventId;
    writeStore(this.storage, this.key, eventId);
  }

  /** Follow another subscription's key, keeping the position (a changed filter). */
  rekey(key) {
    this.key = key;
    if (this.lastEventId) writeStore(this.storage, key, this.lastEventId);
  }
}

function readStore(storage, key) {
  try {
    const value = storage ? storage.getItem(key) : null;
    return parseEventId(value) ? value : null;
  } catch {
    return null; // storage disabled (privacy mode, sandboxed frame): resume within the page only
  }
}

function writeStore(storage, key, value) {
  try {
    storage?.setItem(key, value);
  } catch {
    // quota or disabled storage: the in-memory position still works
  }
}
