// The editor console at /editor: sign in with a token (held in this module's memory only), write a flash with a
// live preview, publish (urgency 1 asks first; an embargo schedules it), and correct, hold, release or withdraw the
// latest flashes. A FLASH that waits for a second editor says so; FLASHes other editors asked for are listed with
// Approve / Reject. Errors from the API (RFC 9457 problems with an `errors` list naming fields) are shown next to
// the field they concern.
import "./breaking-ticker.js";
import { connect } from "./ticker.js";
import { flashId, headlineOf } from "./flashes.js";

const MAX_HEADLINE = 280;
const REACH_MS = 5000; // how often the reach of the newest flashes is fetched
const REACH_ROWS = 10;
const FIELDS = ["headline", "language", "category", "urgency", "regions", "url", "story", "embargo", "token"];
const PENDING_REFRESH_MS = 5000;
const $ = (id) => /** @type {any} */ (document.getElementById(id));

/** @type {string | null} the editor token: never stored, never put in a URL */
let token = null;
/** @type {Map<string, object>} the flashes in the table, by id */
const flashes = new Map();
/** @type {Map<string, string>} "seen by … readers; p90 …" per flash id */
const reachText = new Map();
/** the HTTP status of the last API answer (202: a FLASH waiting for a second editor) */
let lastStatus = 0;
let pendingTimer = 0;

// -- sign in ---------------------------------------------------------------------------------------------------
$("sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("token").value.trim();
  clearErrors(["token"]);
  if (!value) {
    showErrors({ token: "Enter your editor token." });
    return;
  }
  token = value;
  $("token").value = "";
  signedIn(true);
  refreshReach();
});
$("sign-out").addEventListener("click", () => {
  token = null;
  signedIn(false);
});

function signedIn(yes) {
  clearInterval(pendingTimer);
  $("pending-card").hidden = !yes;
  if (yes) {
    loadPending();
    pendingTimer = setInterval(loadPending, PENDING_REFRESH_MS);
  }
  $("signed-in").hidden = !yes;
  $("signed-in").textContent = yes ? "Signed in. The token is checked when you publish." : "";
  $("sign-out").hidden = !yes;
  $("token").disabled = yes;
  $("sign-in-button").hidden = yes;
  if (!yes) $("token").focus();
}

// -- the form ---------------------------------------------------------------------------------------------------
const form = $("flash-form");
form.addEventListener("input", update);
form.addEventListener("change", update);
$("headline").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
});

function values() {
  const regions = [...form.querySelectorAll('input[name="regions"]:checked')].map((input) => input.value);
  const body = {
    headline: $("headline").value,
    language: $("language").value.trim(),
    category: $("category").value,
    urgency: Number($("urgency").value),
    regions,
  };
  const url = $("url").value.trim();
  if (url) body.url = url;
  const story = $("story").value.trim();
  if (story) body.story = story;
  const embargo = $("embargo").value;
  if (embargo) body.embargo = new Date(embargo).toISOString(); // the local time the editor picked, as an instant
  return body;
}

function update() {
  const body = values();
  const length = [...body.headline].length;
  $("headline-count").textContent = `${length} / ${MAX_HEADLINE} characters`;
  const preview = $("preview");
  if (body.language) preview.setAttribute("lang", body.language);
  const now = new Date().toISOString();
  preview.show(
    body.headline.trim()
      ? [
          {
            uri: "urn:ticker:flash:preview",
            version: "1",
            firstCreated: now,
            versionCreated: now,
            pubStatus: "usable",
            language: body.language,
            urgency: body.urgency,
            headlines: [{ role: "main", value: body.headline.trim() }],
            associations: body.url ? [{ rel: "story", uri: body.url }] : [],
          },
        ]
      : [],
  );
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(FIELDS);
  $("form-done").textContent = "";
  const body = values();
  if (!token) {
    showErrors({ token: "Sign in with your editor token first." });
    $("token").focus();
    return;
  }
  if (body.urgency === 1 && !(await confirmAction(`Publish as a FLASH (urgency 1) to every reader: “${body.headline.trim()}”?`))) {
    return;
  }
  $("publish").disabled = true;
  try {
    const doc = await api("POST", "/v1/flashes", body, { "Idempotency-Key": crypto.randomUUID() });
    if (!doc) return;
    remember(doc);
    form.reset();
    if (body.story) $("story").value = body.story; // the next language version of the story shares it
    update();
    const story = body.story ? ` (story ${body.story})` : "";
    if (lastStatus === 202) {
      $("form-done").textContent = `Waiting for a second editor's approval (not published yet): ${headlineOf(doc)}${story}`;
    } else if (doc.embargoedUntil) {
      $("form-done").textContent = `Scheduled for ${new Date(doc.embargoedUntil).toLocaleString()}: ${headlineOf(doc)}${story}`;
    } else {
      $("form-done").textContent = `Published: ${headlineOf(doc)}${story}`;
    }
    $("headline").focus();
  } finally {
    $("publish").disabled = false;
  }
});

// -- API --------------------------------------------------------------------------------------------------------
/**
 * Call the editors' API; on an error, show it next to its fields (or the form) and return null.
 * @param {string} method @param {string} path @param {object | undefined} body @param {Record<string, string>} [headers]
 * @param {string} [errorTarget] where errors without a field go
 */
async function api(method, path, body, headers = {}, errorTarget = "form-error") {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}), ...headers },
      body: body ? JSON.stringify(body) : undefined,
      cache: "no-store",
    });
  } catch {
    $(errorTarget).textContent = "The service cannot be reached; nothing was sent. Try again.";
    return null;
  }
  lastStatus = response.status;
  if (response.ok) return response.json();
  let problem = {};
  try {
    problem = await response.json();
  } catch {
    // not a problem document
  }
  const detail = problem.detail || `${response.status} ${response.statusText}`;
  if (response.status === 401 || (response.status === 403 && errorTarget === "form-error")) {
    showErrors({ token: detail });
    if (response.status === 401) {
      token = null;
      signedIn(false);
    }
    return null;
  }
  const byField = {};
  for (const error of problem.errors || []) {
    const field = FIELDS.includes(error.field) ? error.field : null;
    if (field) byField[field] = byField[field] ? `${byField[field]}; ${error.message}` : error.message;
  }
  if (Object.keys(byField).length && errorTarget === "form-error") {
    showErrors(byField);
    $("form-error").textContent = detail;
  } else {
    $(errorTarget).textContent = [detail, ...(problem.errors || []).map((e) => `${e.field}: ${e.message}`)].join(" ");
  }
  return null;
}

function showErrors(byField) {
  for (const [field, message] of Object.entries(byField)) {
    $(`error-${field}`).textContent = message;
    const input = field === "regions" ? null : $(field);
    input?.setAttribute("aria-invalid", "true");
  }
  const first = Object.keys(byField)[0];
  if (first && first !== "regions") $(first)?.focus();
}

function clearErrors(fields) {
  for (const field of fields) {
    $(`error-${field}`).textContent = "";
    $(field)?.removeAttribute?.("aria-invalid");
  }
  $("form-error").textContent = "";
}

// -- latest flashes ---------------------------------------------------------------------------------------------
function statusOf(doc) {
  if (doc.pubStatus === "canceled") return "withdrawn";
  if (doc.pubStatus === "withheld") {
    if (doc.edNote && doc.edNote.startsWith("Waiting for a second editor")) return "waiting for approval";
    if (doc.embargoedUntil && Date.parse(doc.embargoedUntil) > Date.now()) return "scheduled";
    return "on hold";
  }
  if (doc.expires && Date.parse(doc.expires) <= Date.now()) return "expired";
  return Number(doc.version) > 1 ? `corrected (v${doc.version})` : "published";
}

function remember(doc) {
  const id = flashId(doc);
  const known = flashes.get(id);
  if (known && Number(known.version) >= Number(doc.version)) return;
  flashes.set(id, doc);
  renderTable();
}

function renderTable() {
  const docs = [...flashes.values()].sort((a, b) => (flashId(a) < flashId(b) ? 1 : -1)).slice(0, 50);
  $("latest").tBodies[0].replaceChildren(...docs.map(row));
}

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (text !== undefined) td.textContent = text;
  return td;
}

function button(text, label, onClick, secondary = true) {
  const node = document.createElement("button");
  node.type = "button";
  node.textContent = text;
  node.setAttribute("aria-label", label);
  if (secondary) node.className = "secondary";
  node.addEventListener("click", onClick);
  return node;
}

function row(doc) {
  const id = flashId(doc);
  const tr = document.createElement("tr");
  tr.dataset.id = id;
  const status = statusOf(doc);
  const headline = cell(headlineOf(doc), status === "withdrawn" ? "status-withdrawn" : "");
  headline.lang = doc.language;
  const actions = cell(undefined, "actions");
  if (status !== "withdrawn") {
    actions.append(button("Correct", `Correct “${headlineOf(doc)}”`, () => startCorrection(tr, doc)));
    if (status === "on hold") {
      actions.append(button("Release", `Release “${headlineOf(doc)}”`, () => act(doc, "release")));
    } else if (status !== "scheduled" && status !== "waiting for approval") {
      actions.append(button("Hold", `Hold “${headlineOf(doc)}” while it is checked`, () => act(doc, "hold")));
    }
    const unseen = status === "scheduled" || status === "waiting for approval";
    actions.append(button(unseen ? "Cancel" : "Withdraw", `${unseen ? "Cancel" : "Withdraw"} “${headlineOf(doc)}”`, () => withdraw(doc)));
  }
  const reach = cell(reachText.get(id) ?? "–", "reach");
  tr.append(headline, cell(doc.language), cell(String(doc.urgency)), cell(status, "status"), reach, actions);
  return tr;
}

// -- time to screen: from readers' sampled display receipts (GET /v1/flashes/{id}/reach) ------------------------
/** @param {number} seconds */
function duration(seconds) {
  return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(1)} s`;
}

/** @param {{readers: number, receipts: number, p90?: number}} figures */
function describeReach(figures) {
  if (!figures.receipts) return "no receipts yet";
  return `seen by ${figures.readers.toLocaleString("en")} readers; p90 ${duration(figures.p90 ?? 0)}`;
}

async function refreshReach() {
  if (!token) return;
  const ids = [...flashes.keys()].sort().reverse().slice(0, REACH_ROWS);
  for (const id of ids) {
    let response;
    try {
      response = await fetch(`/v1/flashes/${encodeURIComponent(id)}/reach`, {
        headers: { Authorization: `Bearer ${token}` },
        cache: "no-store",
      });
    } catch {
      return; // the service is away: the next round tries again
    }
    if (!response.ok) continue;
    reachText.set(id, describeReach(await response.json()));
    const node = $("latest").querySelector(`tr[data-id="${CSS.escape(id)}"] td.reach`);
    if (node) node.textContent = reachText.get(id);
  }
}
setInterval(refreshReach, REACH_MS);

function startCorrection(tr, doc) {
  const id = flashId(doc);
  const editor = document.createElement("form");
  editor.className = "correct";
  const input = document.createElement("input");
  input.value = headlineOf(doc);
  input.maxLength = MAX_HEADLINE;
  input.id = `correct-${id}`;
  input.setAttribute("aria-label", "Corrected headline");
  input.setAttribute("aria-describedby", `correct-error-${id}`);
  const error = document.createElement("p");
  error.className = "error";
  error.id = `correct-error-${id}`;
  const save = document.createElement("button");
  save.type = "submit";
  save.textContent = "Save correction";
  editor.append(input, save, button("Cancel", "Cancel the correction", renderTable), error);
  editor.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    if (!token) {
      error.textContent = "Sign in with your editor token first.";
      return;
    }
    const updated = await api("PATCH", `/v1/flashes/${id}`, { headline: input.value }, {}, error.id);
    if (updated) remember(updated);
  });
  const td = tr.cells[0];
  td.replaceChildren(editor);
  input.focus();
}

async function withdraw(doc) {
  $("latest-error").textContent = "";
  if (!token) {
    $("latest-error").textContent = "Sign in with your editor token first.";
    return;
  }
  const question =
    doc.pubStatus === "withheld" && statusOf(doc) !== "on hold"
      ? `Cancel “${headlineOf(doc)}”? It was never published and never will be.`
      : `Withdraw “${headlineOf(doc)}”? It leaves every ticker, list and notification.`;
  if (!(await confirmAction(question))) return;
  const withdrawn = await api("DELETE", `/v1/flashes/${flashId(doc)}`, undefined, {}, "latest-error");
  if (withdrawn) remember(withdrawn);
}

/** Hold or release a flash (POST /v1/flashes/{id}/hold or /release). */
async function act(doc, verb) {
  $("latest-error").textContent = "";
  if (!token) {
    $("latest-error").textContent = "Sign in with your editor token first.";
    return;
  }
  const done = await api("POST", `/v1/flashes/${flashId(doc)}/${verb}`, undefined, {}, "latest-error");
  if (done) remember(done);
}

// -- FLASHes waiting for a second editor ------------------------------------------------------------------------
async function loadPending() {
  if (!token) return;
  let body;
  try {
    const headers = { Authorization: `Bearer ${token}` };
    const response = await fetch("/v1/flashes?status=pending", { headers, cache: "no-store" });
    if (!response.ok) return; // a wrong token shows when the editor publishes
    body = await response.json();
    // Flashes scheduled by anyone on the desk join the latest ones, marked "scheduled" (no event tells of them).
    const scheduled = await fetch("/v1/flashes?status=scheduled", { headers, cache: "no-store" });
    if (scheduled.ok) for (const doc of (await scheduled.json()).flashes) remember(doc);
  } catch {
    $("pending-error").textContent = "The FLASHes waiting for approval could not be loaded.";
    return;
  }
  const askedBy = new Map(body.requests.map((r) => [r.flash, r.by]));
  $("pending-empty").hidden = body.flashes.length > 0;
  $("pending").tBodies[0].replaceChildren(...body.flashes.map((doc) => pendingRow(doc, askedBy.get(flashId(doc)) || "")));
}

function pendingRow(doc, by) {
  const tr = document.createElement("tr");
  tr.dataset.id = flashId(doc);
  const headline = cell(headlineOf(doc));
  headline.lang = doc.language;
  const actions = cell(undefined, "actions");
  actions.append(
    button("Approve", `Approve “${headlineOf(doc)}”`, () => decide(doc, "approve"), false),
    button("Reject", `Reject “${headlineOf(doc)}”`, () => decide(doc, "reject")),
  );
  tr.append(headline, cell(doc.language), cell(by), actions);
  return tr;
}

async function decide(doc, verb) {
  $("pending-error").textContent = "";
  const question =
    verb === "approve"
      ? `Approve and publish the FLASH “${headlineOf(doc)}” to every reader?`
      : `Reject the FLASH “${headlineOf(doc)}”? It is never published.`;
  if (!(await confirmAction(question))) return;
  const done = await api("POST", `/v1/flashes/${flashId(doc)}/${verb}`, undefined, {}, "pending-error");
  if (done) remember(done);
  loadPending();
}

/** An explicit yes/no in a modal dialog (keyboard: Enter/Space on a button, Escape cancels). */
function confirmAction(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
  });
}

async function loadLatest() {
  try {
    const response = await fetch("/v1/flashes?limit=50", { cache: "no-store" });
    const body = await response.json();
    for (const doc of body.flashes) remember(doc);
    // Changes made elsewhere (another editor, the CLI) show up here live.
    const live = connect({ lastEventId: body.last_event_id, storage: null, receiptRate: 0 }); // not a reader
    for (const type of ["flash", "update", "withdraw", "hold"]) {
      live.addEventListener(type, (event) => remember(event.detail.flash));
    }
  } catch {
    $("latest-error").textContent = "The latest flashes could not be loaded.";
  }
}

update();
loadLatest();
