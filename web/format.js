// How numbers read on the page: the visitor's locale, always two decimals for money,
// an explicit sign on changes, and volumes in thousands or millions with one decimal
// (349.5K), so that a column of them lines up.

const money = new Intl.NumberFormat(undefined, {
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
});
const signed = new Intl.NumberFormat(undefined, {
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
  signDisplay: "exceptZero",
});
const whole = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const compact = new Intl.NumberFormat(undefined, {
  notation: "compact",
  minimumFractionDigits: 1,
  maximumFractionDigits: 1,
});

export const format = {
  price: (value) => money.format(value),
  change: (value) => signed.format(value),
  percent: (value) => `${signed.format(value)}%`,
  volume: (value) => (value < 1000 ? whole : compact).format(value),
};
