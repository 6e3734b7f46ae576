// A sparkline of recent prices on a canvas, green or red by where the price stands against
// the day's open, which is drawn as a dotted baseline when it falls within the range.

/** Size a canvas's backing store for the screen's pixel density; returns its 2D context. */
export function prepare(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.width;
  const height = canvas.height;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const context = canvas.getContext("2d");
  context.scale(ratio, ratio);
  return { context, width, height };
}

/**
 * Draw `prices` (oldest first) across the canvas, scaled to their own range so that
 * recent moves show even when the price is far from the open.
 */
export function draw({ context, width, height }, prices, open, colors) {
  context.clearRect(0, 0, width, height);
  if (prices.length < 2) return;
  const pad = 2;
  const low = Math.min(...prices);
  const high = Math.max(...prices);
  const x = (i) => pad + (i / (prices.length - 1)) * (width - 2 * pad);
  const y = (price) => high === low
    ? height / 2
    : pad + ((high - price) / (high - low)) * (height - 2 * pad);
  const rising = prices[prices.length - 1] >= open;

  if (low <= open && open <= high) {
    const baseline = Math.round(y(open)) + 0.5;
    context.setLineDash([2, 3]);
    context.lineWidth = 1;
    context.strokeStyle = colors.baseline;
    context.beginPath();
    context.moveTo(pad, baseline);
    context.lineTo(width - pad, baseline);
    context.stroke();
    context.setLineDash([]);
  }

  context.beginPath();
  prices.forEach((price, i) => context.lineTo(x(i), y(price)));
  context.lineWidth = 1.5;
  context.lineJoin = "round";
  context.strokeStyle = rising ? colors.up : colors.down;
  context.stroke();

  context.lineTo(x(prices.length - 1), height);
  context.lineTo(x(0), height);
  context.closePath();
  const fill = context.createLinearGradient(0, 0, 0, height);
  fill.addColorStop(0, rising ? colors.upFill : colors.downFill);
  fill.addColorStop(1, "transparent");
  context.fillStyle = fill;
  context.fill();
}
