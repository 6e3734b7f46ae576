// The add-a-symbol box: a combobox (the WAI-ARIA pattern with a list of suggestions) over
// the market's listing. A <datalist> of every company would do for fifty; for thousands
// it is megabytes of DOM and a browser-side filter on every keystroke, so suggestions
// come from an index (search.js) and at most SHOWN of them are in the page at a time.
//
// Keys, as screen readers expect of a combobox: ↓ and ↑ move through the suggestions
// (announced through aria-activedescendant, the focus stays in the box), Enter picks the
// one highlighted (or, with none, submits the text as typed), Escape closes the list
// (and, pressed again, clears the box, as any search box does).

import { CompanyIndex } from "./search.js";

const SHOWN = 8;

export class Picker {
  /**
   * @param {HTMLInputElement} input the box, `role=combobox`
   * @param {HTMLElement} listbox its popup, `role=listbox`
   * @param {(company: object) => void} onPick a suggestion was chosen
   */
  constructor(input, listbox, onPick) {
    this.input = input;
    this.listbox = listbox;
    this.onPick = onPick;
    this.index = new CompanyIndex([]);
    this.shown = []; // the companies suggested now, in order
    this.active = -1; // which of them is highlighted
    input.addEventListener("input", () => this.suggest());
    input.addEventListener("keydown", (event) => this.key(event));
    input.addEventListener("blur", () => this.close());
    // mousedown, not click: a click would blur the box first, closing the list under it.
    listbox.addEventListener("mousedown", (event) => {
      const option = event.target.closest("[role=option]");
      if (!option) return;
      event.preventDefault();
      this.pick(this.shown[Number(option.dataset.index)]);
    });
  }

  /** Search this listing from now on (built once per listing). */
  setCompanies(companies) {
    this.index = new CompanyIndex(companies);
    this.suggest();
  }

  /** `{company}` for the company `text` names, or `{problem}` saying why there is none. */
  resolve(text) {
    return this.index.resolve(text);
  }

  suggest() {
    this.show(this.index.search(this.input.value, SHOWN));
  }

  show(companies) {
    this.shown = companies;
    this.active = -1;
    this.input.removeAttribute("aria-activedescendant");
    this.listbox.replaceChildren(...companies.map((company, i) => {
      const option = document.createElement("li");
      option.id = `suggestion-${i}`;
      option.setAttribute("role", "option");
      option.dataset.index = i;
      option.setAttribute("aria-selected", "false");
      const symbol = document.createElement("b");
      symbol.textContent = company.symbol;
      option.append(symbol, ` ${company.name}`);
      return option;
    }));
    const open = companies.length > 0;
    this.listbox.hidden = !open;
    this.input.setAttribute("aria-expanded", String(open));
  }

  close() {
    this.show([]);
  }

  highlight(active) {
    const options = this.listbox.children;
    options[this.active]?.setAttribute("aria-selected", "false");
    this.active = active;
    const option = options[active];
    option.setAttribute("aria-selected", "true");
    option.scrollIntoView({ block: "nearest" });
    this.input.setAttribute("aria-activedescendant", option.id);
  }

  key(event) {
    const count = this.shown.length;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (count === 0) return this.suggest();
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.highlight((this.active + step + count + (this.active === -1 && step < 0)) % count);
    } else if (event.key === "Enter" && this.active >= 0) {
      event.preventDefault();
      this.pick(this.shown[this.active]);
    } else if (event.key === "Escape" && count > 0) {
      event.preventDefault(); // a search box would clear itself too: only the list goes
      this.close();
    }
  }

  pick(company) {
    this.close();
    this.onPick(company);
  }
}
