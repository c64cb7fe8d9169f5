// The demo page's readers panel: the number of readers connected to this hub, from GET /readyz.
import "./breaking-ticker.js";

const output = document.getElementById("readers");
const POLL_MS = 3000;

async function poll() {
  try {
    const response = await fetch("/readyz", { cache: "no-store" });
    const body = await response.json();
    if (typeof body.readers === "number") output.textContent = String(body.readers);
  } catch {
    output.textContent = "–";
  }
  setTimeout(poll, POLL_MS);
}

poll();
