// Sorting the watchlist by a column. Clicking a header cycles ascending, descending, then
// back to the watchlist's own order (the order the symbols were added in).

const TEXT_FIELDS = ["symbol", "name"];
const NUMBER_FIELDS = ["price", "change", "change_pct", "high", "low", "volume"];
export const SORTABLE = [...TEXT_FIELDS, ...NUMBER_FIELDS];

/** Whether rows sorted this way can change places on a tick. */
export function movesOnTicks(sort) {
  return sort !== null && NUMBER_FIELDS.includes(sort.field);
}

/** The sort after a click on `field`'s header; `null` is the watchlist's own order. */
export function nextSort(sort, field) {
  if (sort?.field !== field) return { field, direction: "ascending" };
  return sort.direction === "ascending" ? { field, direction: "descending" } : null;
}

/** Compare two rows' values; rows without a quote yet go last either way. */
export function comparator({ field, direction }) {
  const sign = direction === "ascending" ? 1 : -1;
  const text = TEXT_FIELDS.includes(field);
  return (a, b) => {
    const x = a[field];
    const y = b[field];
    if (x === undefined || y === undefined) return (x === undefined) - (y === undefined);
    return sign * (text ? x.localeCompare(y) : x - y);
  };
}
