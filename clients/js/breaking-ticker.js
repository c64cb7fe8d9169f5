// <breaking-ticker>: the live BREAKING bar a news site shows. One module script and one tag:
//
//   <script type="module" src="https://ticker.example/static/js/breaking-ticker.js"></script>
//   <breaking-ticker lang="ar" category="politics" region="mena"></breaking-ticker>
//
// Attributes: lang, category, region, max-urgency (filters, comma-separated lists; two languages or more are an
// order of preference: one version of each story, and the first is the bar's language), limit (default 8),
// src (the hub; default: where this script came from), label (the bar's label), preview (no connection: show
// what `show()` is given, as the editor console does), receipt-rate (the share of readers whose bar reports when it
// showed each flash, for the newsroom's time to screen; default 0.1, 0 for none), held ("hide", the default: a flash
// the desk put on hold leaves the bar until it is released; "dim": it stays, greyed out and marked). Theme it with
// the --ticker-* custom properties below and
// ::part(bar | label | list | item | flash | held | headline | link | corrected | on-hold | time | status).
// Headlines are always set as text; only http(s) story URLs become links.

import { connect, filterQuery } from "./ticker.js";
import { FlashBoard, directionOf, flashId, headlineOf, isCorrected, isHeld, safeLink } from "./flashes.js";

const CSS = `
:host { display: block; font: var(--ticker-font, inherit); color: var(--ticker-fg, #fff); }
:host([hidden]) { display: none; }
.bar { display: flex; gap: var(--ticker-gap, .75rem); align-items: flex-start; padding: .5rem .75rem;
  background: var(--ticker-bg, #b00020); border-radius: var(--ticker-radius, 0); min-height: 2.5rem; }
.label { font-weight: 800; letter-spacing: .04em; white-space: nowrap; padding-block: .1rem; }
.list { list-style: none; margin: 0; padding: 0; flex: 1; min-width: 0; }
.item { padding-block: .2rem; border-block-end: 1px solid var(--ticker-rule, rgba(255, 255, 255, .3));
  animation: ticker-in .35s ease-out; overflow-wrap: anywhere; }
.item:last-child { border-block-end: 0; }
.item.flash { font-weight: 700; }
.flash-mark { display: inline-block; margin-inline-end: .4em; padding: 0 .3em; font-size: .8em; font-weight: 800;
  background: var(--ticker-flash-bg, #ffd400); color: var(--ticker-flash-fg, #000); border-radius: 2px; }
.item.flash .flash-mark { animation: ticker-pulse 1s ease-in-out 3; }
a { color: var(--ticker-link, inherit); text-decoration: underline; text-underline-offset: .15em; }
a:focus-visible { outline: 2px solid var(--ticker-focus, #fff); outline-offset: 2px; }
.corrected, .on-hold { font-size: .85em; font-style: italic; margin-inline-start: .4em; }
/* Greyed out, still readable: a colour with enough contrast on the bar, not opacity. */
.item.held { color: var(--ticker-held-fg, #e4e4e4); font-weight: 400; }
.item.held .flash-mark { background: var(--ticker-held-mark-bg, #d0d0d0); animation: none; }
time { font-size: .85em; margin-inline-start: .5em; white-space: nowrap; }
.status { font-size: .8em; margin: 0; white-space: nowrap; padding-block: .15rem; }
.sr-only { position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
/* Motion only, never opacity: text stays at full contrast while it moves. */
@keyframes ticker-in { from { transform: translateY(-.4em); } }
@keyframes ticker-pulse { 50% { box-shadow: 0 0 0 .2em var(--ticker-flash-bg, #ffd400); } }
@media (prefers-reduced-motion: reduce) {
  .item, .item.flash .flash-mark { animation: none; }
}
`;

/** Words the bar shows itself, per language; other languages get English. */
const WORDS = {
  en: { label: "BREAKING", flash: "FLASH", corrected: "corrected", held: "on hold", live: "live", connecting: "connecting…", reconnecting: "reconnecting…", closed: "stopped" },
  ar: { label: "عاجل", flash: "خبر عاجل", corrected: "مصحَّح", held: "معلَّق", live: "مباشر", connecting: "جارٍ الاتصال…", reconnecting: "جارٍ إعادة الاتصال…", closed: "متوقف" },
  es: { label: "ÚLTIMA HORA", flash: "URGENTE", corrected: "corregido", held: "retenido", live: "en directo", connecting: "conectando…", reconnecting: "reconectando…", closed: "detenido" },
  fr: { label: "DERNIÈRE MINUTE", flash: "ALERTE", corrected: "corrigé", held: "suspendu", live: "en direct", connecting: "connexion…", reconnecting: "reconnexion…", closed: "arrêté" },
  de: { label: "EILMELDUNG", flash: "EIL", corrected: "korrigiert", held: "zurückgehalten", live: "live", connecting: "verbinde…", reconnecting: "verbinde neu…", closed: "gestoppt" },
};
const FILTER_ATTRIBUTES = ["lang", "category", "region", "max-urgency", "limit", "src", "held"];
const REFRESH_MS = 30000;

let sheet = null;
function styleSheet() {
  if (!sheet) {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS); // a constructed sheet: works under a page CSP that forbids inline <style>
  }
  return sheet;
}

/** The hub this script was loaded from: the part of its URL before /static/js/. */
function defaultHub() {
  const here = new URL(import.meta.url);
  const at = here.pathname.indexOf("/static/js/");
  return here.origin + (at > 0 ? here.pathname.slice(0, at) : "");
}

function words(lang) {
  return WORDS[(lang || "en").toLowerCase().split("-")[0]] || WORDS.en;
}

/** "3 minutes ago" in `lang`. @param {string} iso @param {string} lang @param {number} now */
export function relativeTime(iso, lang, now = Date.now()) {
  const seconds = Math.round((Date.parse(iso) - now) / 1000);
  let format;
  try {
    format = new Intl.RelativeTimeFormat(lang || undefined, { numeric: "auto" });
  } catch {
    format = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  }
  const abs = Math.abs(seconds);
  if (abs < 45) return format.format(0, "second");
  if (abs < 3600) return format.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return format.format(Math.round(seconds / 3600), "hour");
  return format.format(Math.round(seconds / 86400), "day");
}

export class BreakingTicker extends HTMLElement {
  static observedAttributes = FILTER_ATTRIBUTES;

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.adoptedStyleSheets = [styleSheet()];
    this.bar = element("div", "bar", "bar");
    this.labelNode = element("span", "label", "label");
    this.list = element("ol", "list", "list");
    this.statusNode = element("p", "status", "status");
    // New flashes are read out from here, one at a time; the list itself is not a live region, so a reconnect,
    // a reload or a re-sort never re-announces it.
    this.announcer = element("div", "sr-only", "announcer");
    this.announcer.setAttribute("aria-live", "polite");
    this.announcer.setAttribute("aria-atomic", "true");
    this.bar.append(this.labelNode, this.list, this.statusNode);
    root.append(this.bar, this.announcer);
    /** @type {Map<string, {li: HTMLLIElement, key: string}>} */
    this.nodes = new Map();
    this.board = new FlashBoard({ limit: 8, keepHeld: this.getAttribute("held") === "dim" });
    this.client = null;
    this.timers = [];
    this.generation = 0;
    this.started = false;
    this.autoDir = false;
    this.autoLabel = false;
    this.expiryTimer = 0;
  }

  get filter() {
    const maxUrgency = this.getAttribute("max-urgency");
    return {
      lang: this.getAttribute("lang") || undefined,
      category: this.getAttribute("category") || undefined,
      region: this.getAttribute("region") || undefined,
      maxUrgency: maxUrgency ? Number(maxUrgency) : undefined,
    };
  }

  /** The bar's own language (words, times, direction): the first of `lang` (`lang="ar,en"` prefers Arabic). */
  get uiLang() {
    return (this.getAttribute("lang") || "").split(",")[0].trim() || null;
  }

  get hub() {
    return (this.getAttribute("src") || defaultHub()).replace(/\/+$/, "");
  }

  connectedCallback() {
    this.started = true;
    this.decorate();
    this.timers.push(setInterval(() => this.refresh(), REFRESH_MS));
    if (!this.hasAttribute("preview")) this.start();
  }

  disconnectedCallback() {
    this.started = false;
    this.generation += 1;
    for (const timer of this.timers) clearInterval(timer);
    clearTimeout(this.expiryTimer);
    this.timers = [];
    this.client?.close();
    this.client = null;
  }

  attributeChangedCallback(name, old, value) {
    if (!this.started || old === value) return; // initial attributes are read by connectedCallback
    this.decorate();
    if (this.hasAttribute("preview")) return;
    if (name === "held") return; // applies from the next event on: a held flash's own event decides
    if (name === "src") {
      this.client?.close();
      this.client = null;
    }
    this.start();
  }

  /** Show exactly these flashes (preview mode). @param {object[]} flashes */
  show(flashes) {
    this.board = new FlashBoard({ limit: this.limit, keepHeld: this.dimHeld });
    this.board.load(flashes);
    this.sync();
  }

  /** `held="dim"`: held flashes stay on the bar, greyed out; otherwise they leave it until released. */
  get dimHeld() {
    return this.getAttribute("held") === "dim";
  }

  get limit() {
    const limit = Number(this.getAttribute("limit"));
    return Number.isInteger(limit) && limit > 0 && limit <= 200 ? limit : 8;
  }

  decorate() {
    const lang = this.uiLang || document.documentElement.lang || "en";
    const w = words(lang);
    // dir and aria-label follow the language unless the page set them itself.
    if (this.autoDir || !this.hasAttribute("dir")) {
      this.setAttribute("dir", directionOf(lang));
      this.autoDir = true;
    }
    this.labelNode.textContent = this.getAttribute("label") || w.label;
    if (!this.hasAttribute("role")) this.setAttribute("role", "region");
    if (this.autoLabel || !this.hasAttribute("aria-label")) {
      this.autoLabel = true;
      let name = lang;
      try {
        name = new Intl.DisplayNames([lang], { type: "language" }).of(lang) || lang;
      } catch {
        // keep the tag
      }
      this.setAttribute("aria-label", `${this.labelNode.textContent} (${name})`);
    }
    this.board.limit = this.limit;
    this.board.keepHeld = this.dimHeld;
  }

  /** Load the current flashes, then follow the stream from the snapshot's position (or re-filter a live one). */
  async start() {
    const generation = ++this.generation;
    const filter = this.filter;
    let attempt = 0;
    for (;;) {
      try {
        const query = filterQuery(filter);
        const response = await fetch(`${this.hub}/v1/flashes?${query}${query ? "&" : ""}limit=${this.limit}`);
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const body = await response.json();
        if (generation !== this.generation) return;
        this.board.load(body.flashes);
        this.sync();
        if (this.client) {
          this.client.setFilter(filter);
        } else {
          this.follow(filter, body.last_event_id);
        }
        return;
      } catch (error) {
        if (generation !== this.generation) return;
        this.setStatus("reconnecting");
        attempt += 1;
        await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(20000, 250 * 2 ** attempt)));
        if (generation !== this.generation) return;
      }
    }
  }

  follow(filter, lastEventId) {
    const rate = this.getAttribute("receipt-rate");
    const receiptRate = rate === null ? undefined : Number(rate);
    const client = connect({ url: this.hub, ...filter, lastEventId, receiptRate, autoReceipts: false });
    this.client = client;
    for (const type of ["flash", "update", "withdraw", "hold"]) {
      client.addEventListener(type, (event) => {
        const change = this.board.apply(type, event.detail.flash, event.detail.replaces);
        if (change) this.sync();
        // Another language version of a story taking the place of one is news, not a correction.
        const said = event.detail.replaces && change === "replaced" ? "added" : change;
        if ((said === "added" || said === "replaced") && !isHeld(event.detail.flash)) {
          this.announce(event.detail.flash, said);
          client.receipts.shown(event.detail.flash, client.transport); // on screen now: the reader's receipt
        }
        this.relay(event);
      });
    }
    client.addEventListener("reset", (event) => {
      this.board.load(event.detail.flashes);
      this.sync();
      this.relay(event);
    });
    client.addEventListener("status", (event) => {
      this.setAttribute("transport", event.detail.transport);
      this.setStatus(event.detail.state);
      this.relay(event);
    });
  }

  /** The client's events, repeated on the element for the page (and tests) to listen to. */
  relay(event) {
    this.dispatchEvent(new CustomEvent(event.type, { detail: event.detail }));
  }

  setStatus(state) {
    this.setAttribute("state", state);
    this.statusNode.textContent = state === "live" ? "" : words(this.uiLang)[state] || state;
    this.statusNode.hidden = state === "live";
  }

  announce(flash, change) {
    const w = words(this.uiLang);
    const prefix = change === "replaced" ? `${w.corrected}: ` : flash.urgency === 1 ? `${w.flash}: ` : "";
    this.announcer.textContent = prefix + headlineOf(flash);
  }

  refresh() {
    if (this.board.expire().length) this.sync();
    else this.scheduleExpiry(this.board.items());
    const lang = this.uiLang || "en";
    for (const time of this.list.querySelectorAll("time")) time.textContent = relativeTime(time.dateTime, lang);
  }

  /** Bring the list in line with the board, keeping the nodes of flashes that stay (corrections in place). */
  sync() {
    const items = this.board.items();
    const keep = new Set(items.map(flashId));
    for (const [id, node] of this.nodes) {
      if (!keep.has(id)) {
        node.li.remove();
        this.nodes.delete(id);
      }
    }
    const lang = this.uiLang || "en";
    items.forEach((flash, index) => {
      const id = flashId(flash);
      let node = this.nodes.get(id);
      if (!node) {
        node = { li: document.createElement("li"), key: "" };
        node.li.dataset.id = id;
        this.nodes.set(id, node);
      }
      const key = JSON.stringify(flash); // a new version, or a changed preview
      if (node.key !== key) {
        fillItem(node.li, flash, lang);
        node.key = key;
      }
      if (this.list.children[index] !== node.li) this.list.insertBefore(node.li, this.list.children[index] || null);
    });
    this.scheduleExpiry(items);
  }

  /** Take the next flash to expire off the bar at its `expires` time, not at the next periodic refresh. */
  scheduleExpiry(items) {
    clearTimeout(this.expiryTimer);
    const next = Math.min(...items.map((flash) => (flash.expires ? Date.parse(flash.expires) : Infinity)));
    if (!Number.isFinite(next) || !this.started) return;
    // Timers cap at about 24.8 days; a later expiry is picked up by a later reschedule.
    this.expiryTimer = setTimeout(() => this.refresh(), Math.min(Math.max(0, next - Date.now()) + 50, 2 ** 31 - 1));
  }
}

/** One list item, built from text nodes only. @param {HTMLLIElement} li @param {object} flash @param {string} lang */
function fillItem(li, flash, lang) {
  const w = words(lang);
  const flashUrgent = flash.urgency === 1;
  const held = isHeld(flash);
  const kinds = ["item", ...(flashUrgent ? ["flash"] : []), ...(held ? ["held"] : [])].join(" ");
  li.className = kinds;
  li.setAttribute("part", kinds);
  li.dataset.version = String(flash.version);
  const parts = [];
  if (flashUrgent) parts.push(element("span", "flash-mark", "flash-mark", w.flash));
  const href = safeLink(flash);
  const headline = href ? element("a", "headline", "headline link", headlineOf(flash)) : element("span", "headline", "headline", headlineOf(flash));
  if (href) {
    headline.href = href;
    headline.rel = "noopener noreferrer";
  }
  if (flash.language) headline.lang = flash.language;
  parts.push(headline);
  if (isCorrected(flash)) parts.push(element("span", "corrected", "corrected", `(${w.corrected})`));
  if (held) parts.push(element("span", "on-hold", "on-hold", `(${w.held})`));
  const time = element("time", "", "time", relativeTime(flash.firstCreated, lang));
  time.dateTime = flash.firstCreated;
  parts.push(time);
  li.replaceChildren(...parts);
}

/** An element with a class, a part name and text (never markup). */
function element(tag, className, part, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (part) node.setAttribute("part", part);
  if (text !== undefined) node.textContent = text;
  return node;
}

if (!customElements.get("breaking-ticker")) customElements.define("breaking-ticker", BreakingTicker);
