// Finding companies among thousands as fast as someone types: an index built once per
// listing, then each keystroke costs a binary search and a few suggestions, not a pass
// over every name (a market lists up to 10,000).
//
// Suggestions come best first: the symbol typed exactly, then symbols that start with
// the text, then names with a word that starts with it, then names that hold it anywhere
// (this last tier alone scans every name, and only when the others found too few).
// Matching ignores case and accents. Pure: no DOM.

/** Lower case, without accents: "Café" and "cafe" match. */
function fold(text) {
  return text.normalize("NFD").replace(/\p{Mn}/gu, "").toLowerCase();
}

/** The first index in `sorted` (by `key`) whose key is not below `text`. */
function lowerBound(sorted, key, text) {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (key(sorted[middle]) < text) low = middle + 1;
    else high = middle;
  }
  return low;
}

export class CompanyIndex {
  /** @param {{symbol: string, name: string}[]} companies the listing, in its order */
  constructor(companies) {
    this.entries = companies.map((company) => ({
      company,
      symbol: company.symbol.toLowerCase(),
      name: fold(company.name),
    }));
    this.bySymbol = [...this.entries].sort((a, b) => compare(a.symbol, b.symbol));
    this.byName = new Map(this.entries.map((entry) => [entry.name, entry]));
    this.words = []; // [word, entry] for every word of every name, sorted by word
    for (const entry of this.entries) {
      const words = new Set(entry.name.split(/[^\p{L}\p{N}]+/u).filter(Boolean));
      for (const word of words) this.words.push([word, entry]);
    }
    this.words.sort((a, b) => compare(a[0], b[0]));
  }

  /** At most `limit` companies that `text` may mean, best first. */
  search(text, limit) {
    const query = fold(text.trim());
    if (!query || limit <= 0) return [];
    const found = new Set();
    const take = (entry) => {
      found.add(entry);
      return found.size >= limit;
    };
    // Symbols starting with the query (the exact one sorts first among them).
    for (let i = lowerBound(this.bySymbol, (e) => e.symbol, query); i < this.bySymbol.length; i++) {
      const entry = this.bySymbol[i];
      if (!entry.symbol.startsWith(query)) break;
      if (take(entry)) return companies(found);
    }
    // Names with a word starting with the query's first word, and holding all of it there.
    const first = query.split(/[^\p{L}\p{N}]+/u).find(Boolean) ?? query;
    for (let i = lowerBound(this.words, (w) => w[0], first); i < this.words.length; i++) {
      const [word, entry] = this.words[i];
      if (!word.startsWith(first)) break;
      if (found.has(entry) || !(` ${entry.name}`).includes(` ${query}`)) continue;
      if (take(entry)) return companies(found);
    }
    // Names holding the query anywhere.
    for (const entry of this.entries) {
      if (!found.has(entry) && entry.name.includes(query) && take(entry)) break;
    }
    return companies(found);
  }

  /** `{company}` for the company `text` names, or `{problem}` saying why there is none. */
  resolve(text) {
    const query = fold(text.trim());
    const bySymbol = this.bySymbol[lowerBound(this.bySymbol, (e) => e.symbol, query)];
    if (bySymbol?.symbol === query) return { company: bySymbol.company };
    const exact = this.byName.get(query);
    if (exact) return { company: exact.company };
    const matches = this.entries.filter((entry) => entry.name.includes(query));
    if (matches.length === 1) return { company: matches[0].company };
    if (matches.length === 0) return { problem: `No listed company matches “${text.trim()}”.` };
    return {
      problem: `“${text.trim()}” matches ${matches.length} companies: type more, or pick one.`,
    };
  }
}

function compare(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

function companies(entries) {
  return [...entries].map((entry) => entry.company);
}
