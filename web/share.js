// The open tabs of one origin, as a group that shares one stream: which tab leads (the one
// holding a Web Lock, which the browser hands to a waiting tab when the holder's page goes
// away) and what every tab watches (announced on a BroadcastChannel, so that any tab that
// comes to lead already knows it). The stream itself is stream.js's business.
//
// Messages on the channel: `watch` (a tab's watchlist), `bye` (a tab is going),
// `roll-call` (tabs, announce yourselves), and whatever the leader relays, which goes to
// `onMessage`. A tab that crashes sends no `bye`: the leader asks for a roll call when it
// takes over, and forgets the tabs that did not answer it.
//
// Where the browser has no Web Locks or no BroadcastChannel, the group is this tab alone,
// and it leads.

const ROLL_CALL_MS = 2_000; // a live tab answers within a few ms, even in the background

export class ShareGroup {
  /**
   * @param {string} name the lock's and the channel's name (both are per origin)
   * @param {{
   *   onLead: () => void,
   *   onMessage: (message: object) => void,
   *   onWatchers: () => void,
   * }} handlers `onWatchers`: the union of the watchlists may have changed
   */
  constructor(name, handlers) {
    this.handlers = handlers;
    this.own = []; // this tab's watchlist
    this.others = new Map(); // tab id -> its watchlist
    this.leading = false;
    this.channel = null;
    if (!("locks" in navigator) || typeof BroadcastChannel !== "function") {
      this.leading = true;
      return;
    }
    this.tab = crypto.randomUUID();
    this.channel = new BroadcastChannel(name);
    this.channel.addEventListener("message", (event) => this.heard(event.data));
    addEventListener("pagehide", () => this.post({ kind: "bye", tab: this.tab }));
    addEventListener("pageshow", (event) => {
      if (event.persisted) this.announce(this.own); // back from the back/forward cache
    });
    this.post({ kind: "roll-call" });
    // Held for the page's whole life: the promise never settles.
    navigator.locks.request(name, () => {
      this.lead();
      return new Promise(() => {});
    });
  }

  /** Tell every tab (the leader above all) what this tab watches. */
  announce(symbols) {
    this.own = symbols;
    this.post({ kind: "watch", tab: this.tab, symbols });
  }

  /** Every tab's watched symbols, this tab's first, each once. */
  union() {
    const union = new Set(this.own);
    for (const symbols of this.others.values()) {
      for (const symbol of symbols) union.add(symbol);
    }
    return [...union];
  }

  /** Send `message` to every other tab of the group. */
  post(message) {
    this.channel?.postMessage(message);
  }

  lead() {
    this.leading = true;
    const answered = new Set();
    this.answered = answered;
    this.post({ kind: "roll-call" });
    setTimeout(() => {
      for (const tab of this.others.keys()) {
        if (!answered.has(tab)) this.others.delete(tab);
      }
      this.answered = null;
      this.handlers.onWatchers();
    }, ROLL_CALL_MS);
    this.handlers.onLead();
  }

  heard(message) {
    switch (message?.kind) {
      case "watch":
        this.others.set(message.tab, message.symbols);
        this.answered?.add(message.tab);
        this.handlers.onWatchers();
        break;
      case "bye":
        this.others.delete(message.tab);
        this.handlers.onWatchers();
        break;
      case "roll-call":
        this.announce(this.own);
        break;
      default:
        this.handlers.onMessage(message);
    }
  }
}
