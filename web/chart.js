// A candlestick chart of one-minute candles in an SVG: time across (at least half an hour,
// so the first minutes of a market do not fill the width with a few fat candles), price up
// the right side, a dashed line at the last price. Colors come from the stylesheet's
// variables through classes, so dark mode needs nothing here. The whole chart is redrawn
// as one string of markup: at most 1,440 candles, once per animation frame at most.

import { INTERVAL_MS } from "./candles.js";
import { format } from "./format.js";

const HEIGHT = 280;
const PAD = { top: 12, right: 68, bottom: 26, left: 8 };
const MIN_SPAN_MS = 30 * INTERVAL_MS;
const MAX_BODY = 12; // px: the widest a candle's body gets
const LABEL_GAP = 84; // px between time labels at least
const TIME_STEPS = [1, 5, 10, 15, 30, 60, 120, 240, 480].map((m) => m * INTERVAL_MS);

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

/** Draw `candles` ([t, o, h, l, c, v], oldest first) into `svg`, sized to its box. */
export function drawChart(svg, candles, interval = INTERVAL_MS) {
  const width = Math.max(Math.round(svg.getBoundingClientRect().width), 240);
  svg.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
  svg.setAttribute("height", HEIGHT);
  if (candles.length === 0) {
    svg.innerHTML = `<text class="empty" x="${width / 2}" y="${HEIGHT / 2}">No trades yet</text>`;
    return;
  }
  const plot = { left: PAD.left, right: width - PAD.right, top: PAD.top,
                 bottom: HEIGHT - PAD.bottom };
  const start = candles[0][0];
  const span = Math.max(candles[candles.length - 1][0] + interval - start, MIN_SPAN_MS);
  const x = (t) => plot.left + ((t - start) / span) * (plot.right - plot.left);
  const slot = ((plot.right - plot.left) * interval) / span;
  const body = Math.max(1, Math.min(MAX_BODY, slot * 0.7));

  let low = Math.min(...candles.map((c) => c[3]));
  let high = Math.max(...candles.map((c) => c[2]));
  const margin = (high - low || high * 0.01 || 1) * 0.08;
  low = Math.max(low - margin, 0);
  high += margin;
  const y = (price) => plot.top + ((high - price) / (high - low)) * (plot.bottom - plot.top);

  const last = candles[candles.length - 1][4];
  const lastY = y(last);
  const parts = [];
  for (const price of priceTicks(low, high)) {
    const at = y(price);
    parts.push(`<line class="grid" x1="${plot.left}" x2="${plot.right}" y1="${at.toFixed(1)}"`
               + ` y2="${at.toFixed(1)}"/>`);
    if (Math.abs(at - lastY) > 16) { // else the last price's tag covers it
      parts.push(`<text class="axis" x="${plot.right + 6}" y="${at.toFixed(1)}">`
                 + `${format.price(price)}</text>`);
    }
  }
  const step = TIME_STEPS.find((s) => (s / span) * (plot.right - plot.left) >= LABEL_GAP)
    ?? TIME_STEPS[TIME_STEPS.length - 1];
  for (let t = Math.ceil(start / step) * step; t < start + span; t += step) {
    parts.push(`<text class="axis time" x="${x(t).toFixed(1)}" y="${HEIGHT - 8}">`
               + `${clock.format(t)}</text>`);
  }
  for (const [t, open, hi, lo, close] of candles) {
    const centre = (x(t) + slot / 2).toFixed(1);
    const top = y(Math.max(open, close));
    const height = Math.max(1, y(Math.min(open, close)) - top);
    parts.push(
      `<g class="candle ${close >= open ? "up" : "down"}" data-t="${t}" data-h="${hi}"`
      + ` data-c="${close}">`
      + `<line x1="${centre}" x2="${centre}" y1="${y(hi).toFixed(1)}" y2="${y(lo).toFixed(1)}"/>`
      + `<rect x="${(centre - body / 2).toFixed(1)}" y="${top.toFixed(1)}" width="${body.toFixed(1)}"`
      + ` height="${height.toFixed(1)}"/></g>`,
    );
  }
  const at = lastY.toFixed(1);
  parts.push(`<line class="last" x1="${plot.left}" x2="${plot.right}" y1="${at}" y2="${at}"/>`,
             `<rect class="last-tag" x="${plot.right + 2}" y="${(lastY - 9).toFixed(1)}"`
             + ` width="${PAD.right - 4}" height="18" rx="4"/>`,
             `<text class="last-text" x="${plot.right + 6}" y="${at}">${format.price(last)}</text>`);
  svg.innerHTML = parts.join("");
}

// Some four to six round prices across the range: 1, 2, 2.5 or 5 times a power of ten apart.
function priceTicks(low, high) {
  const power = 10 ** Math.floor(Math.log10((high - low) / 6));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => (high - low) / s <= 6);
  const ticks = [];
  for (let n = Math.ceil(low / step); n * step <= high; n += 1) ticks.push(n * step);
  return ticks;
}
