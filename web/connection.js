// The header's connection indicator and latency readout.
//
// Latency is Date.now() minus the market's timestamp of the newest tick on screen: the
// whole trip from the simulator through the server to this page's paint. It assumes
// the server's and the viewer's clocks agree, as they do on one machine or under NTP.

const LABELS = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  down: "Feed down",
  idle: "Idle",
};
const LATENCY_EVERY_MS = 250; // faster than this, the number is a blur

export class ConnectionStatus {
  constructor(indicator, latency) {
    this.indicator = indicator;
    this.latency = latency;
    this.newestTs = null; // the newest tick's timestamp, until it is shown
    this.shownAt = -Infinity;
  }

  get state() {
    return this.indicator.dataset.state;
  }

  /** One of connecting, live, reconnecting, down (the market feed), idle (nothing watched). */
  set(state) {
    if (state === this.state) return;
    this.indicator.dataset.state = state;
    this.indicator.textContent = LABELS[state];
    if (state !== "live") {
      this.newestTs = null;
      this.latency.textContent = "–";
    }
  }

  /** A tick arrived, stamped `ts` by the market. */
  tick(ts) {
    if (this.newestTs === null || ts > this.newestTs) this.newestTs = ts;
  }

  /** Show the latency of the newest tick, at most every LATENCY_EVERY_MS. */
  flush(now) {
    if (this.newestTs === null || this.state !== "live" || now - this.shownAt < LATENCY_EVERY_MS) {
      return;
    }
    this.latency.textContent = `${Math.max(0, Date.now() - this.newestTs)} ms`;
    this.newestTs = null;
    this.shownAt = now;
  }
}
