// One symbol's one-minute candles, as /api/candles/<SYMBOL> gives them: rows
// [t, open, high, low, close, volume], oldest first, t the epoch ms at which the minute
// starts. The stream's price events move them on here the way the market counts its own
// ticks: a quote in the newest candle's minute moves that candle, a later one opens a new
// candle. No DOM: the detail view owns the candles, the chart draws them.

export const INTERVAL_MS = 60_000;
const MAX_CANDLES = 24 * 60; // what the market keeps at most: a day of minutes

/**
 * Fold `quote` (a price event) into `candles`, in place. A quote from before the newest
 * candle's minute (an older tick, replayed) changes nothing; returns whether it counted.
 */
export function addQuote(candles, quote, interval = INTERVAL_MS) {
  const t = Math.floor(quote.ts / interval) * interval;
  const price = quote.price;
  const newest = candles[candles.length - 1];
  if (!newest || t > newest[0]) {
    candles.push([t, price, price, price, price, quote.size ?? 0]);
    if (candles.length > MAX_CANDLES) candles.splice(0, candles.length - MAX_CANDLES);
    return true;
  }
  if (t < newest[0]) return false;
  newest[2] = Math.max(newest[2], price);
  newest[3] = Math.min(newest[3], price);
  newest[4] = price;
  newest[5] += quote.size ?? 0;
  return true;
}

/** The last price and the range of `candles`, or null when there are none. */
export function summarize(candles) {
  if (candles.length === 0) return null;
  let low = Infinity;
  let high = -Infinity;
  for (const candle of candles) {
    low = Math.min(low, candle[3]);
    high = Math.max(high, candle[2]);
  }
  return {
    last: candles[candles.length - 1][4],
    low,
    high,
    from: candles[0][0],
    to: candles[candles.length - 1][0],
    count: candles.length,
  };
}
