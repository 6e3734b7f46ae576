// The add-a-symbol box: the market's companies as suggestions, and which company a typed
// text means (a symbol, or enough of a name to pick one company).

export function fillSuggestions(datalist, companies) {
  datalist.replaceChildren(
    ...companies.map((company) => new Option(company.name, company.symbol)),
  );
}

/** `{company}` for the company `text` names, or `{problem}` saying why there is none. */
export function resolve(text, companies) {
  const query = text.trim();
  const bySymbol = companies.find((company) => company.symbol === query.toUpperCase());
  if (bySymbol) return { company: bySymbol };
  const lower = query.toLowerCase();
  const byName = companies.filter((company) => company.name.toLowerCase().includes(lower));
  const exact = byName.find((company) => company.name.toLowerCase() === lower);
  if (exact || byName.length === 1) return { company: exact ?? byName[0] };
  if (byName.length === 0) return { problem: `No listed company matches “${query}”.` };
  return { problem: `“${query}” matches ${byName.length} companies: type more, or pick one.` };
}
