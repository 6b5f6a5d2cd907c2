// Adds the browser's own zone to every time shown in UTC. The pages work without it.
"use strict";
document.querySelectorAll("time[datetime]").forEach((el) => {
  const at = new Date(el.getAttribute("datetime"));
  if (Number.isNaN(at.getTime())) return;
  const local = document.createElement("span");
  local.className = "local";
  local.textContent = " (" + at.toLocaleString(undefined, { timeZoneName: "short" }) + ")";
  el.append(local);
});
