// Sortable tables: a click on a header of a `table.sortable` sorts its rows by that column, ascending, and a
// second click descending. A cell sorts by its data-sort, else its text; a column whose every cell is a number
// sorts as numbers; cells with no key (a value not recorded) come last. The header says the order (aria-sort).
// Loaded by `dropj serve`'s pages and inlined in the page `dropj stats` writes: it listens on the document.
"use strict";

(() => {
  const key = (cell) => (cell && cell.dataset.sort !== undefined ? cell.dataset.sort : (cell ? cell.textContent : ""));
  const numeric = (text) => text.trim() !== "" && Number.isFinite(Number(text));

  document.addEventListener("click", (event) => {
    const header = event.target.closest("table.sortable thead th");
    if (!header) return;
    const table = header.closest("table");
    const column = header.cellIndex;
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    const keys = new Map(rows.map((row) => [row, key(row.cells[column]).trim()]));
    const given = rows.filter((row) => keys.get(row) !== "");
    const missing = rows.filter((row) => keys.get(row) === "");  // last, either way
    const numbers = given.every((row) => numeric(keys.get(row)));
    const descending = header.getAttribute("aria-sort") === "ascending";
    const compare = numbers ? (a, b) => Number(keys.get(a)) - Number(keys.get(b))
      : (a, b) => keys.get(a).localeCompare(keys.get(b), undefined, {numeric: true});
    given.sort((a, b) => (descending ? -compare(a, b) : compare(a, b)));
    for (const th of table.tHead.rows[0].cells) th.removeAttribute("aria-sort");
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
    body.append(...given, ...missing);
  });
})();
