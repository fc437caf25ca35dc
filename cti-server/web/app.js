// Capture The IP: the pages' behaviour. Live updates come from the event
// stream (/api/stream); if it fails, the page polls instead. Who holds what
// and who ranks where come from the server; this file only shows them.
"use strict";

const $ = (sel) => document.querySelector(sel);

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children) e.append(c);
  return e;
}

// --- colours ---------------------------------------------------------------
// The leaderboard's first ten players get ten hues 36° apart, handed out
// in an order that keeps the first few far apart (the first two 180°, the
// first four 72°); the next twenty repeat them between, lighter then darker.
// Everyone else gets a muted hue from a hash of the name, so that leaders
// stand out.

const SLOTS = [0, 5, 2, 7, 1, 3, 4, 6, 8, 9];
const TIERS = [
  { s: 70, l: 42, shift: 0 },
  { s: 65, l: 62, shift: 18 },
  { s: 60, l: 28, shift: 9 },
];
let palette = new Map();

function setPalette(rankings) {
  palette = new Map(rankings.slice(0, SLOTS.length * TIERS.length).map((r, i) => [r.name, rankColour(i)]));
}

// Within a tier, lightness steps too, so that neighbouring hues also differ
// in brightness.
function rankColour(i) {
  const t = TIERS[Math.floor(i / SLOTS.length)];
  const slot = SLOTS[i % SLOTS.length];
  return { h: (200 + t.shift + slot * 36) % 360, s: t.s, l: t.l + ((slot % 3) - 1) * 5 };
}

// FNV-1a over UTF-16 units, then a murmur-style finaliser to spread the bits.
function hash(name) {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function hsl(name) {
  const c = palette.get(name);
  if (c) return c;
  const h = hash(name);
  return { h: h % 360, s: 28, l: 40 + ((h >>> 9) % 16) };
}

function colour(name) {
  const c = hsl(name);
  return `hsl(${c.h.toFixed(1)} ${c.s}% ${c.l}%)`;
}

// Dark text on light colours, light text on dark ones.
function inkFor(name) {
  return hsl(name).l >= 55 ? "#111" : "#fff";
}

function swatch(name) {
  return el("span", { className: "swatch", style: `background:${colour(name)}` });
}

// --- data ------------------------------------------------------------------

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

function ordinal(n) {
  const s = ["th", "st", "nd", "rd"], v = n % 100;
  return n + (s[(v - 20) % 10] || s[v] || s[0]);
}

// --- home page -------------------------------------------------------------

let currentWindow = "all";
let blocks = [];
let selected = null;
// Per-block counts of every player (from /score), loaded when a square is
// selected: the runner-up and the others in the block.
let counts = null;

function buildGrid() {
  const grid = $("#grid");
  for (let b = 0; b < 256; b++) {
    const cell = el("button", { type: "button", className: "cell", textContent: String(b), tabIndex: b === 0 ? 0 : -1 });
    cell.dataset.block = b;
    cell.addEventListener("click", () => select(b));
    cell.addEventListener("focus", () => select(b));
    grid.append(cell);
  }
  // Arrow keys move between squares; Tab leaves the grid.
  grid.addEventListener("keydown", (e) => {
    const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -16, ArrowDown: 16, Home: -256, End: 256 };
    if (!(e.key in moves) || selected === null) return;
    e.preventDefault();
    const next = Math.min(255, Math.max(0, selected + moves[e.key]));
    grid.children[next].focus();
  });
}

function describe(b) {
  const where = `${b.block}.0.0.0/8`;
  if (b.holder) return `${where}: ${b.holder}, ${b.claims} of ${b.total}`;
  if (b.tied) return `${where}: tied at ${b.claims} (${b.total} claimed)`;
  return `${where}: unclaimed`;
}

async function refreshBlocks() {
  const data = await getJSON("/api/blocks?window=" + currentWindow);
  blocks = data.blocks;
  const cells = $("#grid").children;
  for (const b of blocks) {
    const c = cells[b.block];
    c.className = "cell" + (b.holder ? " held" : "") + (b.tied ? " tied" : "") + (b.block === selected ? " selected" : "");
    c.style.background = b.holder ? colour(b.holder) : "";
    c.style.color = b.holder ? inkFor(b.holder) : "";
    if (b.holder) c.dataset.holder = b.holder; else delete c.dataset.holder;
    c.title = describe(b);
    c.setAttribute("aria-label", describe(b));
  }
  $("#updated").textContent = "as of " + new Date(data.updated_at).toLocaleTimeString();
  if (selected !== null) showBlock();
}

async function loadCounts() {
  const data = await getJSON(currentWindow === "all" ? "/score" : "/score/" + currentWindow);
  const byBlock = new Map();
  for (const [name, held] of Object.entries(data.score)) {
    for (const [block, n] of held) {
      if (!byBlock.has(block)) byBlock.set(block, []);
      byBlock.get(block).push([name, n]);
    }
  }
  for (const list of byBlock.values()) list.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  counts = byBlock;
}

function select(block) {
  if (block === selected) return;
  const cells = $("#grid").children;
  if (selected !== null) {
    cells[selected].classList.remove("selected");
    cells[selected].tabIndex = -1;
  }
  selected = block;
  cells[block].classList.add("selected");
  cells[block].tabIndex = 0;
  showBlock();
  loadCounts().then(showBlock).catch(console.error);
}

function showBlock() {
  const b = blocks[selected];
  const info = $("#block-info");
  if (!b) return;
  const rows = [el("h3", {}, `Block ${b.block} `, el("small", { textContent: `${b.block}.0.0.0/8` }))];
  if (b.holder) {
    rows.push(el("p", {}, swatch(b.holder), playerLink(b.holder),
      ` holds it with ${b.claims} of the ${b.total} claimed addresses.`));
  } else if (b.tied) {
    rows.push(el("p", { textContent: `Tied: nobody holds it. The leaders have ${b.claims} each, of ${b.total} claimed addresses.` }));
  } else {
    rows.push(el("p", { textContent: "Unclaimed: nobody has an address here yet." }));
  }
  const others = (counts && counts.get(b.block)) || [];
  const rest = others.filter(([name]) => name !== b.holder);
  // Everyone else here, if the counts cover the block (a server that lists
  // only holders in /score cannot tell the runner-up).
  const complete = others.reduce((n, [, c]) => n + c, 0) === b.total;
  if (b.holder && (rest.length || complete)) {
    rows.push(el("p", {}, "Runner-up: ", ...(rest.length ? [swatch(rest[0][0]), playerLink(rest[0][0]), ` with ${rest[0][1]}.`] : ["nobody else has an address here."])));
  }
  const shown = b.holder ? rest.slice(1, 6) : rest.slice(0, 6);
  if (shown.length) {
    const label = b.holder ? "Also here: " : "Here: ";
    const items = shown.flatMap(([name, n], i) => [i ? ", " : "", swatch(name), playerLink(name), ` ${n}`]);
    rows.push(el("p", { className: "others" }, label, ...items, rest.length > shown.length + (b.holder ? 1 : 0) ? ", …" : ""));
  }
  info.replaceChildren(...rows);
}

// The board shows the top 50; the palette colours a few more.
const RANK_ROWS = 50;

async function refreshRanks() {
  const limit = Math.max(RANK_ROWS, SLOTS.length * TIERS.length);
  const data = await getJSON(`/api/ranks?window=${currentWindow}&limit=${limit}`);
  setPalette(data.rankings);
  const body = $("#ranks tbody");
  body.replaceChildren(...data.rankings.slice(0, RANK_ROWS).map((r) =>
    el("tr", {},
      el("td", { textContent: r.rank }),
      el("td", {}, el("span", { className: "name" }, swatch(r.name), playerLink(r.name))),
      el("td", { className: "num", textContent: r.blocks.length }),
      el("td", { className: "num", textContent: r.claims }))));
  if (!data.rankings.length) {
    body.replaceChildren(el("tr", {}, el("td", { colSpan: 4, className: "hint", textContent: "Nobody yet: be the first to claim." })));
  }
}

function claimItem(c) {
  const li = el("li", {},
    el("time", { dateTime: c.claimed_at, textContent: new Date(c.claimed_at).toLocaleTimeString() }),
    el("code", { textContent: c.ip }),
    el("span", { className: "name" }, swatch(c.name), playerLink(c.name)));
  li.dataset.ip = c.ip;
  return li;
}

async function refreshRecent() {
  const data = await getJSON("/api/recent?limit=30");
  $("#recent").replaceChildren(...data.claims.map(claimItem));
}

// Colours follow the leaderboard, so the board is drawn after it.
async function refreshBoard() {
  await refreshRanks();
  await refreshBlocks();
}

let pending = null;
function refreshSoon() {
  if (pending) return;
  pending = setTimeout(() => {
    pending = null;
    refreshBoard().catch(console.error);
    if (selected !== null) loadCounts().then(showBlock).catch(console.error);
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
  // One event per commit: its claims (oldest first) and the blocks whose
  // holder changed; "slide" when a window's edge alone changed a holder;
  // "gap" when events were dropped for a slow connection.
  es.addEventListener("commit", (e) => {
    const list = $("#recent");
    for (const c of JSON.parse(e.data).claims) {
      // One row per address: its current owner.
      for (const li of list.querySelectorAll("li")) if (li.dataset.ip === c.ip) li.remove();
      list.prepend(claimItem(c));
      flash(c.block);
    }
    while (list.children.length > 30) list.lastChild.remove();
    refreshSoon();
  });
  es.addEventListener("slide", refreshSoon);
  es.addEventListener("gap", () => { refreshSoon(); refreshRecent().catch(console.error); });
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
      counts = null;
      for (const o of document.querySelectorAll("#tabs button")) o.classList.toggle("active", o === b);
      refreshSoon();
    });
  }
  Promise.all([refreshBoard(), refreshRecent()]).catch(console.error);
  listen();
}

// --- player page ------------------------------------------------------------

function standingText(s) {
  if (s.rank === 1 && !s.tied) return "holds it";
  return (s.tied ? "tied " : "") + `${ordinal(s.rank)} of ${s.of}`;
}

async function player() {
  const name = new URLSearchParams(location.search).get("name") || "";
  $("#player-name").textContent = name || "Player";
  document.title = `${name || "Player"} — Capture The IP`;
  let u;
  try {
    u = await getJSON("/api/users/" + encodeURIComponent(name));
  } catch (e) {
    $("#player-summary").textContent = name ? `${name} has no addresses right now.` : "No player named.";
    return;
  }
  let rank = null;
  try {
    const ranks = await getJSON("/api/ranks?window=all");
    setPalette(ranks.rankings);
    rank = ranks.rankings.find((r) => r.name === name);
  } catch (e) {
    console.error(e);
  }
  $("#player-swatch").style.background = colour(name);
  const blocksWord = (n) => `${n} block${n === 1 ? "" : "s"}`;
  $("#player-summary").textContent =
    `Holds ${blocksWord(u.blocks_held)} and owns ${u.claims} address${u.claims === 1 ? "" : "es"} in ${blocksWord(u.standing.length)}` +
    (rank ? `; ${ordinal(rank.rank)} on the leaderboard.` : ".");
  const mini = $("#mini");
  const cells = [];
  for (let b = 0; b < 256; b++) cells.push(el("span", { className: "m" }));
  for (const s of u.standing) {
    const c = cells[s.block];
    c.title = `${s.block}.0.0.0/8: ${standingText(s)}, ${s.claims} addresses`;
    c.className = "m " + (s.rank === 1 ? (s.tied ? "tied" : "held") : "present");
  }
  document.body.style.setProperty("--player", colour(name));
  mini.replaceChildren(...cells);
  const order = (s) => (s.rank === 1 ? (s.tied ? 1 : 0) : 2);
  const rows = [...u.standing].sort((a, b) => order(a) - order(b) || a.rank - b.rank || b.claims - a.claims || a.block - b.block);
  $("#standing tbody").replaceChildren(...rows.map((s) =>
    el("tr", { className: order(s) === 0 ? "held" : "" },
      el("td", { textContent: `${s.block}.0.0.0/8` }),
      el("td", { textContent: standingText(s) }),
      el("td", { className: "num", textContent: s.claims }))));
}

const page = document.body.dataset.page;
if (page === "home") home();
if (page === "player") player();
