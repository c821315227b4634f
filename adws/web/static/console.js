// adw console: live updates over Server-Sent Events.  On each "change" event the page
// fetches itself and swaps every element marked data-live with its fresh copy (parsed by
// DOMParser, which runs no script).  EventSource reconnects on its own after the server
// went away (the stream says "retry: 1000"), so a restarted coordinator is picked up.
"use strict";
(function () {
  const stream = document.body.dataset.stream;
  const dot = document.getElementById("live-state");
  if (!stream) { if (dot) dot.remove(); return; }
  let busy = false, again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const response = await fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (response.ok) {
        const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
        for (const old of document.querySelectorAll("[data-live]")) {
          const next = fresh.getElementById(old.id);
          if (!next) continue;
          const follow = old.dataset.follow === "yes";
          const open = new Set([...old.querySelectorAll("details[open]")].map((d) => d.id).filter(Boolean));
          old.replaceWith(next);
          for (const id of open) { const d = document.getElementById(id); if (d) d.open = true; }
          if (follow) { const lines = next.querySelector(".transcript"); if (lines) lines.scrollTop = lines.scrollHeight; }
        }
        document.body.dataset.updated = String(Date.now());
      }
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }
  const source = new EventSource(stream);
  // Every stream opens with a "change": the page catches up on what happened before it
  // connected (or while the server was away).
  source.addEventListener("change", refresh);
  source.addEventListener("open", () => { if (dot) dot.className = "live-state on"; });
  source.addEventListener("error", () => { if (dot) dot.className = "live-state off"; });
})();
