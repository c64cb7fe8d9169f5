// What a BREAKING bar shows, as plain data: the current flashes, newest first, each at its latest version.
// Applying the same event twice, or an older version after a newer one, changes nothing, so a snapshot from
// GET /v1/flashes and the live stream that follows it can overlap without showing a flash twice.

/** @typedef {Record<string, any>} Flash  a ninjs 3.1 document as the hub sends it */

const RTL_LANGUAGES = new Set(["ar", "arc", "ckb", "dv", "fa", "he", "iw", "ku", "ps", "sd", "syr", "ug", "ur", "yi"]);

/** A flash's id: the last segment of its ninjs `uri`. @param {Flash} flash */
export function flashId(flash) {
  return String(flash.uri).split(/[/:]/).pop() || "";
}

/** The main headline's text. @param {Flash} flash */
export function headlineOf(flash) {
  const main = (flash.headlines || []).find((h) => h.role === "main") || (flash.headlines || [])[0];
  return main ? String(main.value) : "";
}

/**
 * The story link, only if it is an absolute http(s) URL; anything else (javascript:, data:, relative) is no link.
 * @param {Flash} flash
 * @returns {string | null}
 */
export function safeLink(flash) {
  for (const association of flash.associations || []) {
    if (typeof association?.uri !== "string") continue;
    try {
      const url = new URL(association.uri);
      if (url.protocol === "http:" || url.protocol === "https:") return url.href;
    } catch {
      // not an absolute URL
    }
  }
  return null;
}

/** Whether the flash was corrected (a later version marked as a correction). @param {Flash} flash */
export function isCorrected(flash) {
  return Number(flash.version) > 1 && (flash.genres || []).some((g) => g.literal === "correction" || g.name === "Correction");
}

/**
 * "rtl" for a right-to-left language tag, else "ltr" (Intl.Locale's text info where the runtime has it).
 * @param {string | null | undefined} lang
 * @returns {"rtl" | "ltr"}
 */
export function directionOf(lang) {
  if (!lang) return "ltr";
  try {
    const locale = new Intl.Locale(lang);
    const info = typeof locale.getTextInfo === "function" ? locale.getTextInfo() : locale.textInfo;
    if (info && info.direction) return info.direction === "rtl" ? "rtl" : "ltr";
  } catch {
    // not a valid tag: fall through to the list
  }
  return RTL_LANGUAGES.has(lang.toLowerCase().split("-")[0]) ? "rtl" : "ltr";
}

/** @param {Flash} flash @param {number} now */
export function isExpired(flash, now) {
  return typeof flash.expires === "string" && Date.parse(flash.expires) <= now;
}

/** Newest first: by first creation time, then by id (ids start with their creation time in hex). */
function newestFirst(a, b) {
  const byTime = Date.parse(b.firstCreated) - Date.parse(a.firstCreated);
  if (byTime) return byTime;
  const x = flashId(a);
  const y = flashId(b);
  return x < y ? 1 : x > y ? -1 : 0;
}

/** Whether the desk has the flash on hold (off the air while it is checked). @param {Flash} flash */
export function isHeld(flash) {
  return flash.pubStatus === "withheld";
}

export class FlashBoard {
  /** `keepHeld`: a held flash stays on the board (to be shown greyed out) instead of leaving it.
   * @param {{limit?: number, now?: () => number, keepHeld?: boolean}} [options] */
  constructor({ limit = 10, now = () => Date.now(), keepHeld = false } = {}) {
    this.limit = limit;
    this.now = now;
    this.keepHeld = keepHeld;
    /** @type {Map<string, Flash>} shown flashes by id */
    this.shown = new Map();
    /** @type {Map<string, number>} the latest version seen of every flash, withdrawn ones included */
    this.versions = new Map();
  }

  /** The flashes to show, newest first. @returns {Flash[]} */
  items() {
    return [...this.shown.values()].sort(newestFirst);
  }

  /** Replace everything with a snapshot (GET /v1/flashes, or a `reset` event's flashes). @param {Flash[]} flashes */
  load(flashes) {
    this.shown.clear();
    for (const flash of flashes) {
      const id = flashId(flash);
      const version = Number(flash.version) || 1;
      const known = this.versions.get(id);
      if (known !== undefined && version < known) continue; // the live stream already had a later version
      this.versions.set(id, version);
      if (this.showable(flash)) this.shown.set(id, flash);
    }
    this.trim();
  }

  /**
   * Apply one event; returns what changed for the flash: "added", "replaced", "removed" or null (nothing: a
   * duplicate, an older version, an expired flash, or one that falls off the end of the bar).
   * @param {"flash" | "update" | "withdraw" | "hold"} type
   * @param {Flash} flash
   * @param {string} [replaces]  the uri of another version of the story that `flash` takes the place of
   * @returns {"added" | "replaced" | "removed" | null}
   */
  apply(type, flash, replaces) {
    const id = flashId(flash);
    // Another version of the story (a better language, or the next best after a withdrawal) takes its place.
    const replacing = typeof replaces === "string" && replaces !== flash.uri;
    const gone = replacing && this.shown.delete(flashId({ uri: replaces }));
    const version = Number(flash.version) || 1;
    const known = this.versions.get(id);
    // The version it had before may come back as it was (no newer version): shown again, unless it already is.
    const again = replacing && (gone || !this.shown.has(id));
    if (known !== undefined && (version < known || (version === known && !again))) return gone ? "removed" : null;
    this.versions.set(id, version);
    const wasShown = gone || this.shown.has(id);
    if (type === "withdraw" || !this.showable(flash)) {
      this.shown.delete(id);
      return wasShown ? "removed" : null;
    }
    this.shown.set(id, flash);
    this.trim();
    if (!this.shown.has(id)) return null;
    return wasShown ? "replaced" : "added";
  }

  /** Not withdrawn, not expired, and not on hold (unless held ones are kept). @param {Flash} flash */
  showable(flash) {
    if (flash.pubStatus === "canceled" || isExpired(flash, this.now())) return false;
    return this.keepHeld || !isHeld(flash);
  }

  /** Drop expired flashes; returns their ids. @returns {string[]} */
  expire() {
    const now = this.now();
    const gone = [];
    for (const [id, flash] of this.shown) {
      if (isExpired(flash, now)) {
        this.shown.delete(id);
        gone.push(id);
      }
    }
    return gone;
  }

  trim() {
    if (this.shown.size <= this.limit) return;
    for (const flash of this.items().slice(this.limit)) this.shown.delete(flashId(flash));
  }
}
