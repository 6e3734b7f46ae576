// The watchlist table: one row per watched symbol. Quotes are queued as they arrive and
// applied once per animation frame, so a burst of ticks costs one DOM update per row,
// however many ticks it holds.

import { format } from "./format.js";
import { comparator, movesOnTicks, nextSort } from "./sorting.js";
import { draw, prepare } from "./sparkline.js";

const HISTORY = 90; // prices one sparkline spans
const FLASH_MS = 600;

export class WatchlistTable {
  /**
   * @param {HTMLTableElement} table the watchlist table, its headers marked `data-sort`
   * @param {HTMLTemplateElement} template one row, its cells marked `data-field`
   * @param {{onRemove: (symbol: string) => void, onSort: (sort: object|null) => void}} handlers
   */
  constructor(table, template, { onRemove, onSort }) {
    this.head = table.tHead;
    this.body = table.tBodies[0];
    this.template = template;
    this.onRemove = onRemove;
    this.onSort = onSort;
    this.rows = new Map(); // symbol -> row, in watchlist order
    this.pending = new Map(); // symbol -> newest quote not shown yet
    this.sort = null;
    this.colors = readColors();
    this.head.addEventListener("click", (event) => this.headerClicked(event));
    this.body.addEventListener("click", (event) => this.bodyClicked(event));
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => this.recolor());
  }

  /** Show exactly these companies, in this order; rows already shown keep what they know. */
  show(companies) {
    const rows = new Map();
    for (const company of companies) {
      rows.set(company.symbol, this.rows.get(company.symbol) ?? this.createRow(company));
    }
    for (const [symbol, row] of this.rows) {
      if (!rows.has(symbol)) {
        row.element.remove();
        this.pending.delete(symbol);
      }
    }
    this.rows = rows;
    this.arrange();
  }

  /** Take a quote (from a snapshot or a tick); it is shown at the next `flush`. */
  queue(quote) {
    const row = this.rows.get(quote.symbol);
    if (!row) return;
    // Another open is another market day (the market was restarted): start the line over.
    if (quote.open !== row.open) {
      row.open = quote.open;
      row.prices = [];
    }
    // A snapshot after a reconnect may repeat the tick already drawn.
    if (quote.seq !== row.seq) {
      row.seq = quote.seq;
      row.prices.push(quote.price);
      if (row.prices.length > HISTORY) row.prices.shift();
    }
    this.pending.set(quote.symbol, quote);
  }

  /** Apply every queued quote to its row; called once per animation frame. */
  flush() {
    if (this.pending.size === 0) return;
    for (const [symbol, quote] of this.pending) this.render(this.rows.get(symbol), quote);
    this.pending.clear();
    if (movesOnTicks(this.sort)) this.arrange();
  }

  /** Sort by `{field, direction}`, or `null` for the watchlist's own order. */
  sortBy(sort) {
    this.sort = sort;
    for (const th of this.head.querySelectorAll("th[data-sort]")) {
      if (th.dataset.sort === sort?.field) th.setAttribute("aria-sort", sort.direction);
      else th.removeAttribute("aria-sort");
    }
    this.arrange();
  }

  createRow(company) {
    const element = this.template.content.firstElementChild.cloneNode(true);
    const cells = {};
    for (const cell of element.querySelectorAll("[data-field]")) cells[cell.dataset.field] = cell;
    element.dataset.symbol = company.symbol;
    cells.symbol.textContent = company.symbol;
    cells.symbol.title = company.name;
    cells.name.textContent = company.name;
    element.querySelector("button.remove").setAttribute(
      "aria-label", `Remove ${company.symbol} from the watchlist`,
    );
    return {
      element,
      cells,
      tick: cells.price.firstElementChild,
      pill: cells.change_pct.firstElementChild,
      spark: prepare(cells.trend.querySelector("canvas")),
      company,
      quote: null,
      open: null,
      seq: null,
      prices: [],
    };
  }

  render(row, quote) {
    const { cells } = row;
    const previous = row.quote;
    row.quote = quote;
    setText(row.tick, format.price(quote.price));
    setText(cells.change, format.change(quote.change));
    setText(row.pill, format.percent(quote.change_pct));
    setText(cells.high, format.price(quote.high));
    setText(cells.low, format.price(quote.low));
    setText(cells.volume, format.volume(quote.volume));
    row.element.dataset.sign = quote.change > 0 ? "up" : quote.change < 0 ? "down" : "flat";
    if (previous && quote.price !== previous.price) {
      const color = quote.price > previous.price ? this.colors.flashUp : this.colors.flashDown;
      row.tick.animate(
        [{ backgroundColor: color }, { backgroundColor: "transparent" }],
        { duration: FLASH_MS, easing: "ease-out" },
      );
    }
    draw(row.spark, row.prices, quote.open, this.colors);
  }

  /** Put the rows in order, moving as few as needed and never the one holding focus. */
  arrange() {
    const rows = [...this.rows.values()];
    if (this.sort) {
      const compare = comparator(this.sort);
      rows.sort((a, b) => compare(values(a), values(b)));
    }
    const elements = rows.map((row) => row.element);
    const current = this.body.children;
    if (current.length === elements.length && elements.every((el, i) => current[i] === el)) {
      return;
    }
    // Moving a node drops its focus, so the focused row stays put and the others move
    // around it: a keyboard user keeps their place while prices re-sort the table.
    const focused = document.activeElement?.closest("tr");
    const anchor = elements.indexOf(focused);
    elements.forEach((element, i) => {
      if (anchor === -1 || i > anchor) this.body.append(element);
      else if (i < anchor) this.body.insertBefore(element, focused);
    });
  }

  headerClicked(event) {
    const th = event.target.closest("th[data-sort]");
    if (!th) return;
    this.sortBy(nextSort(this.sort, th.dataset.sort));
    this.onSort(this.sort);
  }

  bodyClicked(event) {
    const button = event.target.closest("button.remove");
    if (!button) return;
    const row = button.closest("tr");
    const neighbour = row.nextElementSibling ?? row.previousElementSibling;
    this.onRemove(row.dataset.symbol);
    neighbour?.querySelector("button.remove").focus();
  }

  recolor() {
    this.colors = readColors();
    for (const row of this.rows.values()) {
      if (row.quote) draw(row.spark, row.prices, row.quote.open, this.colors);
    }
  }
}

function values(row) {
  return { symbol: row.company.symbol, name: row.company.name, ...row.quote };
}

// Skipping equal text spares the browser a layout for cells that did not change.
function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

// Canvas and animations take colors, not CSS variables: read them from the stylesheet.
function readColors() {
  const style = getComputedStyle(document.documentElement);
  const color = (name) => style.getPropertyValue(name).trim();
  return {
    up: color("--up"),
    down: color("--down"),
    upFill: color("--up-fill"),
    downFill: color("--down-fill"),
    baseline: color("--muted"),
    flashUp: color("--flash-up"),
    flashDown: color("--flash-down"),
  };
}
