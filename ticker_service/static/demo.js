// Minimal live BREAKING bar: load the current flashes, then follow the WebSocket from that point.
// Headlines are always set with textContent, never as HTML.
const params = new URLSearchParams(location.search);
const lang = params.get("lang") || "en";
const list = document.getElementById("flashes");
const status = document.getElementById("status");
document.getElementById("lang").textContent = lang;
document.documentElement.lang = lang;
if (["ar", "he", "fa", "ur"].includes(lang.split("-")[0])) list.dir = "rtl";

const MAX_ITEMS = 10;
let lastEventId = null;
let retry = 500;

const idOf = (flash) => flash.uri.split(/[/:]/).pop();

function render(flash, type = "flash") {
  const id = idOf(flash);
  let item = list.querySelector(`li[data-id="${CSS.escape(id)}"]`);
  if (flash.pubStatus === "canceled") {
    if (item) item.remove();
    return;
  }
  // A correction of a flash no longer shown is not news: it does not jump to the top.
  if (!item && type !== "flash") return;
  const fresh = !item;
  if (fresh) {
    item = document.createElement("li");
    item.dataset.id = id;
  }
  item.replaceChildren();
  item.className = flash.urgency <= 2 ? "urgent" : "";
  const text = flash.headlines[0].value;
  const link = (flash.associations || []).find((a) => /^https?:\/\//.test(a.uri));
  if (link) {
    const a = document.createElement("a");
    a.href = link.uri;
    a.rel = "noopener";
    a.textContent = text;
    item.append(a);
  } else {
    item.append(document.createTextNode(text));
  }
  if (Number(flash.version) > 1) {
    const note = document.createElement("span");
    note.className = "corrected";
    note.textContent = "(corrected)";
    item.append(note);
  }
  if (fresh) list.prepend(item);
  while (list.children.length > MAX_ITEMS) list.lastElementChild.remove();
}

async function start() {
  try {
    const response = await fetch(`/v1/flashes?lang=${encodeURIComponent(lang)}&limit=${MAX_ITEMS}`);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const body = await response.json();
    for (const flash of body.flashes.slice().reverse()) render(flash);
    lastEventId = body.last_event_id;
  } catch (error) {
    status.textContent = `unavailable (${error.message}), retrying…`;
    setTimeout(start, Math.random() * retry);
    retry = Math.min(retry * 2, 20000);
    return;
  }
  retry = 500;
  connect();
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/v1/stream?lang=${encodeURIComponent(lang)}&last_event_id=${lastEventId}`;
  const ws = new WebSocket(url);
  ws.onopen = () => { status.textContent = "live"; retry = 500; };
  ws.onmessage = (message) => {
    const event = JSON.parse(message.data);
    lastEventId = event.event_id;
    if (event.type === "reset") {
      // The history could not fill our gap: start again from the current flashes.
      list.replaceChildren();
      for (const flash of event.flashes.slice(0, MAX_ITEMS).reverse()) render(flash);
      return;
    }
    render(event.flash, event.type);
  };
  ws.onclose = (close) => {
    if (close.code === 1008) {
      status.textContent = `refused: ${close.reason}`;
      return; // a bad filter will not get better by retrying
    }
    status.textContent = "reconnecting…";
    setTimeout(connect, Math.random() * retry);
    retry = Math.min(retry * 2, 20000);
  };
}

start();
