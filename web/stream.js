// The page's one EventSource, for every watched symbol at once: a browser opens at most
// six HTTP/1.1 connections to a site, so a stream per symbol would starve the page.
//
// When a stream drops, the browser reconnects by itself and sends Last-Event-ID; the
// server then replays exactly what was missed, or sends a fresh snapshot first, so
// nothing here resumes anything. What the browser does not do is retry after an answer
// that is not a stream (a 503 while the server starts, say): it closes the EventSource
// for good, and this reports `onFail` so the page can start over.

import { withToken } from "./api.js";

export class QuoteStream {
  /**
   * @param {{
   *   onSnapshot: (quotes: object[]) => void,
   *   onPrice: (quote: object) => void,
   *   onFeed: (up: boolean) => void,
   *   onDrop: () => void,
   *   onFail: () => void,
   * }} handlers
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.source = null;
  }

  /** Stream these symbols instead of whatever is streamed now; none: no stream. */
  watch(symbols) {
    this.close();
    if (symbols.length === 0) return;
    const { onSnapshot, onPrice, onFeed, onDrop, onFail } = this.handlers;
    // Listed symbols hold only A-Z, 0-9 and dots: nothing in them needs escaping.
    const source = new EventSource(withToken(`/stream?symbols=${symbols.join(",")}`));
    source.addEventListener("snapshot", (event) => onSnapshot(JSON.parse(event.data).quotes));
    source.addEventListener("price", (event) => onPrice(JSON.parse(event.data)));
    source.addEventListener("status", (event) => onFeed(JSON.parse(event.data).feed === "up"));
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        this.close();
        onFail();
      } else {
        onDrop();
      }
    });
    this.source = source;
  }

  close() {
    this.source?.close();
    this.source = null;
  }
}
