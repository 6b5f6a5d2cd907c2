// The console's only script; every page works without it. It adds the browser's own
// zone beside each time shown in UTC, and refreshes a list marked data-refresh (open
// incidents, deliveries) every 15 s while the reader is not using a form in it.
"use strict";

function localTimes(root) {
  root.querySelectorAll("time[datetime]").forEach((el) => {
    const at = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(at.getTime()) || el.querySelector(".local")) return;
    const local = document.createElement("span");
    local.className = "local";
    local.textContent = " (" + at.toLocaleString(undefined, { timeZoneName: "short" }) + ")";
    el.append(local);
  });
}

async function refresh() {
  const live = document.querySelector("[data-refresh]");
  if (!live || live.contains(document.activeElement) || live.querySelector("details[open]")) return;
  const answer = await fetch(location.href, { credentials: "same-origin" });
  if (!answer.ok) return;
  const page = new DOMParser().parseFromString(await answer.text(), "text/html");
  const fresh = page.querySelector("[data-refresh]");
  if (fresh) {
    localTimes(fresh);
    live.replaceWith(document.adoptNode(fresh));
  }
}

localTimes(document);
if (document.querySelector("[data-refresh]")) setInterval(() => refresh().catch(() => {}), 15000);
