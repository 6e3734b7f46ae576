// The detail view of one symbol: a modal dialog with the company, the day's figures from
// its latest quote, and a chart of today's one-minute candles.
//
// Opening it asks the server for the quote (/api/snapshot) and the candles
// (/api/candles/<SYMBOL>, which the market answers, so every worker says the same); then
// the stream's price events move the chart on, painted once per animation frame with the
// table. Price events that arrive before the candles do are kept and folded in after
// them, so the chart never goes back. If the candles cannot be had (the market is away),
// the chart is drawn from the price events since it opened and the candles are asked for
// again, a few seconds later.
//
// A row opens it by a click or by Enter while it has the focus. The dialog is the
// browser's own modal <dialog>: the focus moves into it, Escape closes it, and the focus
// goes back to the row it came from. The chart is an image whose text alternative is the
// caption under it: the last price and the day's range.

import { ApiError, getJSON } from "./api.js";
import { INTERVAL_MS, addQuote, summarize } from "./candles.js";
import { drawChart } from "./chart.js";
import { format } from "./format.js";

const RETRY_MS = 3_000;
const MAX_EARLY = 10_000; // price events kept while the candles load, at most
const STATS = ["price", "change", "open", "high", "low", "volume"];

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

export class DetailView {
  /**
   * @param {HTMLDialogElement} dialog its parts marked `data-detail`, the chart an <svg>
   * @param {HTMLElement} rows the table body whose rows (`data-symbol`) open it
   * @param {(symbol: string) => object|undefined} company the listed company of a symbol
   */
  constructor(dialog, rows, company) {
    this.dialog = dialog;
    this.parts = {};
    for (const part of dialog.querySelectorAll("[data-detail]")) {
      this.parts[part.dataset.detail] = part;
    }
    this.svg = dialog.querySelector("svg");
    this.symbol = null; // while open
    this.quote = null;
    this.candles = [];
    this.early = null; // price events taken while the candles load; null once they came
    this.interval = INTERVAL_MS;
    this.dirty = false;
    this.loading = 0; // bumped by every open, so an answer for an earlier one is dropped
    this.retryTimer = 0;
    rows.addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-symbol]");
      if (row && !event.target.closest("button, a, input")) this.open(company(row.dataset.symbol));
    });
    rows.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && event.target.matches("tr[data-symbol]")) {
        event.preventDefault();
        this.open(company(event.target.dataset.symbol));
      }
    });
    // The close event comes a task after the dialog closed and the focus went back to its
    // row: an Enter in between has opened it again, and that is not this one's end.
    dialog.addEventListener("close", () => {
      if (!dialog.open) this.closed();
    });
    new ResizeObserver(() => this.changed()).observe(this.svg);
  }

  /** Show `company`'s detail: its figures and chart, moving live until closed. */
  open(company) {
    if (!company) return;
    this.symbol = company.symbol;
    this.quote = null;
    this.candles = [];
    this.early = [];
    this.parts.symbol.textContent = company.symbol;
    this.parts.name.textContent = company.name;
    this.parts.notice.textContent = "Loading the chart…";
    for (const stat of STATS) this.parts[stat].textContent = "–";
    this.dirty = true;
    this.flush();
    if (!this.dialog.open) this.dialog.showModal();
    this.load(++this.loading);
  }

  /** Take a quote from the stream (a snapshot's or a price event); shown at `flush`. */
  queue(quote) {
    if (quote.symbol !== this.symbol) return;
    if (this.quote && quote.seq <= this.quote.seq) return; // repeated by a snapshot
    this.quote = quote;
    this.dirty = true;
    if (quote.seq === 0) return; // an opening quote: no trade yet
    addQuote(this.candles, quote, this.interval);
    if (this.early && this.early.length < MAX_EARLY) this.early.push(quote);
  }

  /** Paint what changed since the last frame. */
  flush() {
    if (!this.dirty || this.symbol === null) return;
    this.dirty = false;
    const quote = this.quote;
    if (quote) {
      this.parts.price.textContent = format.price(quote.price);
      this.parts.change.textContent =
        `${format.change(quote.change)} (${format.percent(quote.change_pct)})`;
      this.parts.open.textContent = format.price(quote.open);
      this.parts.high.textContent = format.price(quote.high);
      this.parts.low.textContent = format.price(quote.low);
      this.parts.volume.textContent = format.volume(quote.volume);
      this.dialog.dataset.sign = quote.change > 0 ? "up" : quote.change < 0 ? "down" : "flat";
    }
    drawChart(this.svg, this.candles, this.interval);
    this.parts.summary.textContent = describe(this.symbol, summarize(this.candles));
  }

  async load(attempt) {
    const symbol = encodeURIComponent(this.symbol);
    // The latest quote, for the figures only (its tick is in the candles already), shown
    // as soon as it comes: the market may take longer over the candles.
    if (!this.quote) {
      getJSON(`/api/snapshot?symbols=${symbol}`).then(([quote]) => {
        if (attempt !== this.loading || !quote || this.quote?.seq >= quote.seq) return;
        this.quote = quote;
        this.changed();
      }, () => {}); // the stream's next price fills the figures in
    }
    try {
      const answer = await getJSON(`/api/candles/${symbol}`);
      if (attempt !== this.loading) return;
      this.interval = answer.interval;
      this.candles = answer.candles;
      for (const quote of this.early) addQuote(this.candles, quote, this.interval);
      this.early = null;
      this.parts.notice.textContent = "";
    } catch (error) {
      if (attempt !== this.loading) return;
      const answered = error instanceof ApiError;
      const reason = answered ? error.message : "the server cannot be reached";
      this.parts.notice.textContent =
        `Today's candles are not available (${reason}); showing prices since this opened.`;
      // A refusal (4xx) stands; a market or server away (5xx, no answer) may come back.
      if (!answered || error.status >= 500) {
        this.retryTimer = setTimeout(() => this.load(attempt), error.retryAfterMs ?? RETRY_MS);
      }
    }
    this.dirty = true;
    this.flush();
  }

  changed() {
    this.dirty = true;
    this.flush();
  }

  closed() {
    const symbol = this.symbol;
    clearTimeout(this.retryTimer);
    this.loading += 1;
    this.symbol = null;
    this.early = null;
    const row = [...document.querySelectorAll("tr[data-symbol]")]
      .find((element) => element.dataset.symbol === symbol);
    row?.focus();
  }
}

// The chart's text alternative, also shown under it.
function describe(symbol, summary) {
  if (!summary) return `${symbol} has not traded yet today.`;
  const span = summary.count === 1
    ? `one one-minute candle, at ${clock.format(summary.from)}`
    : `${summary.count} one-minute candles from ${clock.format(summary.from)} `
      + `to ${clock.format(summary.to)}`;
  return `${symbol} last ${format.price(summary.last)}; today's range `
    + `${format.price(summary.low)} to ${format.price(summary.high)}; ${span}.`;
}
