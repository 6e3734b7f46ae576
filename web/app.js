// The ticker page: loads the market's listing, shows the watchlist, and keeps one stream
// of quotes open for it. Quotes are queued as they arrive and painted once per frame.

import { getJSON } from "./api.js";
import { ConnectionStatus } from "./connection.js";
import { DetailView } from "./detail.js";
import { Picker } from "./picker.js";
import * as prefs from "./prefs.js";
import { QuoteStream } from "./stream.js";
import { WatchlistTable } from "./table.js";

const DEFAULT_SIZE = 8; // a first visit watches the market's first eight symbols, of thousands
const MAX_WATCHED = 50; // a readable table, and well inside the server's per-stream limit
const MAX_RETRY_MS = 5_000;

const byId = (id) => document.getElementById(id);
const input = byId("add-symbol");

let listing = new Map(); // symbol -> {symbol, name, sector}: what the market lists
let watched = null; // the watchlist's symbols in order; null until the listing is loaded
let failures = 0; // failed attempts in a row, for the back-off
let retryTimer = 0;
let frame = 0;

const picker = new Picker(input, byId("suggestions"), add);
const status = new ConnectionStatus(byId("connection"), byId("latency"));
const table = new WatchlistTable(byId("watchlist"), byId("row"), {
  onRemove: remove,
  onSort: prefs.saveSort,
});
const detail = new DetailView(byId("detail"), byId("rows"), (symbol) => listing.get(symbol));
// Why a stream came back with a snapshot rather than every tick it missed.
const GAPS = {
  restart: "The market restarted: prices start over from its new state.",
  "too-old": "Back after a long gap: prices are the latest, not every tick missed.",
  lagging: "This connection fell behind: prices jumped to the latest",
};

const stream = new QuoteStream({
  onSnapshot(quotes, reason, skipped) {
    for (const quote of quotes) {
      table.queue(quote);
      detail.queue(quote);
    }
    schedule();
    if (reason in GAPS) {
      say(reason === "lagging" ? `${GAPS.lagging} (${skipped} updates skipped).` : GAPS[reason]);
    }
  },
  onPrice(quote) {
    table.queue(quote);
    detail.queue(quote);
    status.tick(quote.ts);
    schedule();
  },
  onFeed(up) {
    failures = 0;
    status.set(up ? "live" : "down");
  },
  onDrop() {
    status.set("reconnecting");
  },
  onFail() {
    status.set("reconnecting");
    retryLater();
  },
});

function schedule() {
  frame ||= requestAnimationFrame(paint);
}

function paint(now) {
  frame = 0;
  table.flush();
  detail.flush();
  status.flush(now);
}

function say(message) {
  byId("notice").textContent = message;
}

/** Load the listing, then show and stream the watchlist; on failure, try again later. */
async function connect() {
  let companies;
  try {
    companies = await getJSON("/api/symbols");
  } catch (error) {
    say(error.status === 503
      ? "Waiting for the market feed…"
      : `Cannot load the market's symbols (${error.message}); retrying.`);
    retryLater(error.retryAfterMs);
    return;
  }
  listing = new Map(companies.map((company) => [company.symbol, company]));
  picker.setCompanies(companies);
  const first = companies.slice(0, DEFAULT_SIZE).map((company) => company.symbol);
  // Symbols the market no longer lists (it was restarted with another seed) drop out.
  watched = (watched ?? prefs.loadWatchlist() ?? first).filter((symbol) => listing.has(symbol));
  say("");
  update();
}

// Without a Retry-After: 0.5 s, 1 s, 2 s, ... up to 5 s, each drawn at random around that
// value so that a restarted server is not met by every page in the same instant.
function retryLater(delayMs) {
  const backoff = Math.min(500 * 2 ** failures, MAX_RETRY_MS) * (0.5 + Math.random());
  clearTimeout(retryTimer);
  retryTimer = setTimeout(connect, delayMs ?? backoff);
  failures += 1;
}

/** Show the watched symbols and stream exactly those. */
function update() {
  clearTimeout(retryTimer);
  table.show(watched.map((symbol) => listing.get(symbol)));
  byId("empty").hidden = watched.length > 0;
  stream.watch(watched);
  if (watched.length === 0) status.set("idle");
  else if (status.state === "idle") status.set("connecting");
}

function add(company) {
  if (watched.includes(company.symbol)) return say(`${company.symbol} is already watched.`);
  if (watched.length >= MAX_WATCHED) return say(`A watchlist holds at most ${MAX_WATCHED}.`);
  watched = [...watched, company.symbol];
  prefs.saveWatchlist(watched);
  update();
  input.value = "";
  say(`Added ${company.symbol}, ${company.name}.`);
}

function remove(symbol) {
  watched = watched.filter((watchedSymbol) => watchedSymbol !== symbol);
  prefs.saveWatchlist(watched);
  update();
  if (watched.length === 0) input.focus();
  say(`Removed ${symbol}.`);
}

byId("add").addEventListener("submit", (event) => {
  event.preventDefault();
  if (watched === null) say("The market's symbols are still loading.");
  else if (input.value.trim()) {
    const { company, problem } = picker.resolve(input.value);
    if (problem) say(problem);
    else add(company);
  }
});

// "/" jumps to the add box, as in many web apps; typed into a field, it is just a slash.
document.addEventListener("keydown", (event) => {
  const typing = event.target.closest("input, textarea, select, [contenteditable]");
  if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
    event.preventDefault();
    input.focus();
  }
});

// How often prices may update: every tick, or a few a second per symbol, the same in every
// tab (another tab's choice arrives as a storage event).
const rate = byId("rate");
function useRate(value) {
  rate.value = value;
  stream.setRate(value);
}
rate.addEventListener("change", () => {
  prefs.saveRate(rate.value);
  useRate(rate.value);
});
window.addEventListener("storage", (event) => {
  if (event.key === prefs.RATE_KEY) useRate(prefs.loadRate());
});

useRate(prefs.loadRate());
table.sortBy(prefs.loadSort());
connect();
