// The demo page's readers panel: the number of readers connected to this hub (GET /readyz), refreshed every few
// seconds and whenever one of the page's own bars connects or drops.
import "./breaking-ticker.js";

const output = document.getElementById("readers");
const POLL_MS = 5000;
let timer = 0;

async function poll() {
  clearTimeout(timer);
  try {
    const response = await fetch("/readyz", { cache: "no-store" });
    const body = await response.json();
    if (typeof body.readers === "number") output.textContent = String(body.readers);
  } catch {
    output.textContent = "–";
  }
  timer = setTimeout(poll, POLL_MS);
}

for (const bar of document.querySelectorAll("breaking-ticker")) bar.addEventListener("status", poll);
poll();
