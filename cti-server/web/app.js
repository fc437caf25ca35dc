// Capture The IP: the pages' behaviour. Live updates come from the event
// stream (/api/stream); if it fails, the page polls instead.
"use strict";

const $ = (sel) => document.querySelector(sel);

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children) e.append(c);
  return e;
}

// A stable colour per player name.
function colour(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${h % 360} 62% ${38 + (h >> 9) % 18}%)`;
}

// "no-cache": revalidate every time (a 304 costs little). The API allows a
// second of caching, which would hide a change announced by a live event.
async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-cache" });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

function playerLink(name) {
  return el("a", { href: "/player?name=" + encodeURIComponent(name), textContent: name });
}

// --- home page -------------------------------------------------------------

let currentWindow = "all";

function buildGrid() {
  const grid = $("#grid");
  for (let b = 0; b < 256; b++) {
    grid.append(el("div", { className: "cell", textContent: String(b), title: `${b}.0.0.0/8` }));
  }
}

async function refreshBlocks() {
  const data = await getJSON("/api/blocks?window=" + currentWindow);
  const cells = $("#grid").children;
  for (const b of data.blocks) {
    const c = cells[b.block];
    c.className = "cell" + (b.holder ? " held" : "") + (b.tied ? " tied" : "");
    c.style.background = b.holder ? colour(b.holder) : "";
    if (b.holder) c.dataset.holder = b.holder; else delete c.dataset.holder;
    c.title = `${b.block}.0.0.0/8: ` + (b.holder ? `${b.holder} (${b.claims} of ${b.total})`
      : b.tied ? `tied at ${b.claims} (${b.total} claimed)` : "unclaimed");
  }
  $("#updated").textContent = "as of " + new Date(data.updated_at).toLocaleTimeString();
}

async function refreshRanks() {
  const data = await getJSON("/api/ranks?window=" + currentWindow);
  const body = $("#ranks tbody");
  body.replaceChildren(...data.rankings.slice(0, 50).map((r) =>
    el("tr", {},
      el("td", { textContent: r.rank }),
      el("td", {}, el("span", { className: "swatch", style: `background:${colour(r.name)}` }), playerLink(r.name)),
      el("td", { className: "num", textContent: r.blocks.length }),
      el("td", { className: "num", textContent: r.claims }))));
}

function claimItem(c) {
  return el("li", {}, `${new Date(c.claimed_at).toLocaleTimeString()} ${c.ip} `, playerLink(c.name));
}

async function refreshRecent() {
  const data = await getJSON("/api/recent?limit=30");
  $("#recent").replaceChildren(...data.claims.map(claimItem));
}

let pending = null;
function refreshSoon() {
  if (pending) return;
  pending = setTimeout(() => {
    pending = null;
    refreshBlocks().catch(console.error);
    refreshRanks().catch(console.error);
  }, 250);
}

function flash(block) {
  const c = $("#grid").children[block];
  if (!c) return;
  c.classList.add("flash");
  setTimeout(() => c.classList.remove("flash"), 800);
}

let pollTimer = null;
function poll() {
  if (pollTimer) return;
  pollTimer = setInterval(() => { refreshSoon(); refreshRecent().catch(console.error); }, 5000);
}

function listen() {
  if (!("EventSource" in window)) return poll();
  const es = new EventSource("/api/stream");
  es.addEventListener("open", () => { $("#live").classList.add("on"); });
  es.addEventListener("claim", (e) => {
    const c = JSON.parse(e.data);
    const list = $("#recent");
    list.prepend(claimItem(c));
    while (list.children.length > 30) list.lastChild.remove();
    flash(c.block);
    refreshSoon();
  });
  es.addEventListener("blocks", refreshSoon);
  es.addEventListener("error", () => {
    $("#live").classList.remove("on");
    if (es.readyState === EventSource.CLOSED) poll();
  });
}

function home() {
  buildGrid();
  for (const o of document.querySelectorAll(".origin")) o.textContent = location.origin;
  for (const b of document.querySelectorAll("#tabs button")) {
    b.addEventListener("click", () => {
      currentWindow = b.dataset.window;
      for (const o of document.querySelectorAll("#tabs button")) o.classList.toggle("active", o === b);
      refreshSoon();
    });
  }
  Promise.all([refreshBlocks(), refreshRanks(), refreshRecent()]).catch(console.error);
  listen();
}

// --- player page ------------------------------------------------------------

async function player() {
  const name = new URLSearchParams(location.search).get("name") || "";
  $("#player-name").textContent = name || "Player";
  document.title = `${name} — Capture The IP`;
  try {
    const u = await getJSON("/api/users/" + encodeURIComponent(name));
    $("#player-summary").textContent = `Holds ${u.blocks_held} blocks and owns ${u.claims} addresses.`;
    $("#standing tbody").replaceChildren(...u.standing.map((s) =>
      el("tr", {},
        el("td", { textContent: `${s.block}.0.0.0/8` }),
        el("td", { textContent: s.rank + (s.tied ? " (tied)" : "") }),
        el("td", { textContent: s.of }),
        el("td", { className: "num", textContent: s.claims }))));
  } catch (e) {
    $("#player-summary").textContent = "No claims yet.";
  }
}

const page = document.body.dataset.page;
if (page === "home") home();
if (page === "player") player();
