// What the page remembers between visits, in localStorage: the watchlist, its sort and
// how often prices may update.
// Where storage is unavailable (disabled, full) the page still works and just forgets.

import { SORTABLE } from "./sorting.js";

const WATCHLIST_KEY = "ticker.watchlist";
const SORT_KEY = "ticker.sort";
export const RATE_KEY = "ticker.rate";
export const RATES = ["", "4", "1"]; // live, a few a second, once a second (per symbol)

function read(key) {
  try {
    return JSON.parse(localStorage.getItem(key));
  } catch {
    return null;
  }
}

function write(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Nothing to do: see the top of this file.
  }
}

/** The saved symbols, in order, or `null` on a first visit. */
export function loadWatchlist() {
  const saved = read(WATCHLIST_KEY);
  return Array.isArray(saved) ? saved.filter((symbol) => typeof symbol === "string") : null;
}

export function saveWatchlist(symbols) {
  write(WATCHLIST_KEY, symbols);
}

/** The saved `{field, direction}`, or `null` for the watchlist's own order. */
export function loadSort() {
  const saved = read(SORT_KEY);
  const valid = SORTABLE.includes(saved?.field)
    && ["ascending", "descending"].includes(saved?.direction);
  return valid ? { field: saved.field, direction: saved.direction } : null;
}

export function saveSort(sort) {
  write(SORT_KEY, sort);
}

/** The saved updates a second per symbol ("" for every tick). */
export function loadRate() {
  const saved = read(RATE_KEY);
  return RATES.includes(saved) ? saved : "";
}

export function saveRate(rate) {
  write(RATE_KEY, rate);
}
