// The page's quotes, from one EventSource per browser, not per tab.
//
// A browser opens at most six HTTP/1.1 connections to a site, and an EventSource holds
// one for as long as the page is open: with a stream per tab, a seventh tab never loads.
// So the tabs of one origin share a stream. The tab holding a Web Lock (the leader) keeps
// the one EventSource, for the union of every tab's watchlist, and relays each of its
// events over a BroadcastChannel; every tab (the leader too) takes them the same way,
// keeping only its own symbols. Tabs announce their watchlists on the channel, and the
// leader opens a new stream when the union changes, from the last event id it saw, so
// the server replays what happened in between. When the leader goes, the browser gives
// the lock to another tab, which already knows every watchlist and the last event id:
// it opens the stream from there, and no tick is lost. A tab that starts watching a
// symbol asks /api/snapshot for its quote, since a resumed stream brings no snapshot (a
// fresh one does: the first stream of all needs no such request).
//
// The page may ask for at most a few prices a second per symbol (`setRate`, the stream's
// max_rate): every tab of a browser shares the choice (it is remembered in localStorage),
// so the leader opens the shared stream with it.
//
// A browser without Web Locks or BroadcastChannel (or a page served over plain HTTP from
// a host other than this machine: Web Locks exist only in secure contexts) runs the same
// code as a leader of one, with a stream of its own.
//
// When a stream drops, the browser reconnects by itself with Last-Event-ID, and the server
// replays exactly what was missed (or a fresh snapshot). What the browser does not do is
// retry after an answer that is not a stream (a 503 while the server starts, say): it
// closes the EventSource for good, and the leader reports `onFail` so its page can start
// over (and call `watch` again, which opens a new stream).

import { getJSON, withToken } from "./api.js";
import { ShareGroup } from "./share.js";

const EVENTS = ["snapshot", "price", "status"];
// Past this many symbols, the shared stream carries every symbol: the server refuses a
// request naming more than its TICKER_MAX_SYMBOLS (100 by default).
const MAX_NAMED = 100;

export class QuoteStream {
  /**
   * @param {{
   *   onSnapshot: (quotes: object[], reason?: string, skipped?: number) => void,
   *   onPrice: (quote: object) => void,
   *   onFeed: (up: boolean) => void,
   *   onDrop: () => void,
   *   onFail: () => void,
   * }} handlers
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.symbols = new Set(); // what this tab watches
    this.seqs = new Map(); // symbol -> seq of the newest quote handed to the page
    this.lastEventId = ""; // of the newest event seen, from the stream or relayed
    this.source = null; // the EventSource, while this tab leads and something is watched
    this.streamed = null; // the symbols `source` was opened for (null: every symbol)
    this.rate = ""; // max_rate: updates a second per symbol, "" for every tick
    this.streamedRate = ""; // the rate `source` was opened with
    this.feed = null; // the newest status event's data, or "drop", relayed to newcomers
    // Tabs opened with different tokens may be granted different symbols: one group each.
    this.group = new ShareGroup(withToken("ticker.stream"), {
      onLead: () => this.refresh(),
      onMessage: (message) => this.received(message),
      onWatchers: () => this.refresh(),
    });
  }

  /** Quotes of these symbols from now on, instead of those watched so far; none: no quotes. */
  watch(symbols) {
    const gained = symbols.filter((symbol) => !this.symbols.has(symbol));
    for (const symbol of this.symbols) {
      if (!symbols.includes(symbol)) this.seqs.delete(symbol);
    }
    this.symbols = new Set(symbols);
    this.group.announce(symbols);
    const fresh = this.refresh();
    if (gained.length > 0 && !fresh) this.fetchSnapshot(gained);
  }

  /** At most `rate` prices a second per symbol from now on ("" for every tick). */
  setRate(rate) {
    if (rate === this.rate) return;
    this.rate = rate;
    this.refresh();
  }

  // Leading ------------------------------------------------------------------------

  /**
   * As leader: (re)open the stream if the union of watchlists changed or it failed.
   * Returns whether it opened a fresh one, which starts with a snapshot of every symbol.
   */
  refresh() {
    if (!this.group.leading) return false;
    const union = this.group.union();
    const symbols = union.length > MAX_NAMED ? null : union;
    const same = String(symbols) === String(this.streamed) && this.rate === this.streamedRate;
    if (same && this.source && this.source.readyState !== EventSource.CLOSED) {
      this.relayFeed();
      return false;
    }
    this.source?.close();
    this.source = null;
    this.streamed = symbols;
    this.streamedRate = this.rate;
    if (union.length === 0) return false;
    this.source = this.open(symbols);
    return !this.lastEventId;
  }

  open(symbols) {
    const query = [];
    // Listed symbols hold only A-Z, 0-9 and dots: nothing in them needs escaping.
    if (symbols) query.push(`symbols=${symbols.join(",")}`);
    if (this.rate) query.push(`max_rate=${this.rate}`);
    if (this.lastEventId) query.push(`lastEventId=${encodeURIComponent(this.lastEventId)}`);
    const source = new EventSource(withToken(`/stream?${query.join("&")}`));
    for (const name of EVENTS) {
      source.addEventListener(name, (event) => {
        const message = { kind: "event", name, data: event.data, id: event.lastEventId };
        this.group.post(message);
        this.received(message);
      });
    }
    source.addEventListener("error", () => {
      if (source !== this.source) return;
      this.feed = "drop";
      this.group.post({ kind: "drop" });
      // A stream gone for good is for the leader's page to start over (and watch again).
      if (source.readyState === EventSource.CLOSED) this.handlers.onFail();
      else this.received({ kind: "drop" });
    });
    return source;
  }

  /** Tell the tabs how the stream stands, for one that just announced itself. */
  relayFeed() {
    if (this.feed === "drop") this.group.post({ kind: "drop" });
    else if (this.feed) this.group.post({ kind: "event", name: "status", data: this.feed, id: "" });
  }

  // Every tab ----------------------------------------------------------------------

  /** A stream event (this tab's own, or relayed by the leader), or a dropped stream. */
  received(message) {
    // A tab that watches nothing (while others do) has no stream to be live or down.
    const watching = this.symbols.size > 0;
    if (message.kind === "drop") {
      this.feed = "drop";
      if (watching) this.handlers.onDrop();
      return;
    }
    if (message.kind !== "event") return;
    if (message.id) this.lastEventId = message.id;
    const data = JSON.parse(message.data);
    if (message.name === "status") {
      this.feed = message.data;
      if (watching) this.handlers.onFeed(data.feed === "up");
    } else if (message.name === "price") {
      if (this.symbols.has(data.symbol) && this.isNew(data)) this.handlers.onPrice(data);
    } else if (message.name === "snapshot") {
      // The stream's snapshot is the truth, even when it goes back (a restarted market).
      const quotes = data.quotes.filter((quote) => this.symbols.has(quote.symbol));
      for (const quote of quotes) this.seqs.set(quote.symbol, quote.seq);
      if (quotes.length > 0 || data.reason !== "new") {
        this.handlers.onSnapshot(quotes, data.reason, data.skipped);
      }
    }
  }

  /** Whether `quote` is newer than what the page has of its symbol; if so, it now has it. */
  isNew(quote) {
    const seen = this.seqs.get(quote.symbol);
    if (seen !== undefined && quote.seq <= seen) return false;
    this.seqs.set(quote.symbol, quote.seq);
    return true;
  }

  /** The latest quotes of newly watched symbols: a resumed stream brings no snapshot. */
  async fetchSnapshot(symbols) {
    let quotes;
    try {
      quotes = await getJSON(`/api/snapshot?symbols=${symbols.join(",")}`);
    } catch {
      return; // their next ticks will fill the rows in
    }
    const fresh = quotes.filter((quote) => this.symbols.has(quote.symbol) && this.isNew(quote));
    if (fresh.length > 0) this.handlers.onSnapshot(fresh);
  }
}
