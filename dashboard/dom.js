// Building the page without HTML strings: text always lands as text (no innerHTML, so nothing a page or a
// caller wrote can run), and no `style` attribute is ever set (the CSP allows none): looks are classes.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

export function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

// A table inside a focusable, labelled region that scrolls sideways on narrow screens.
export function scrollingTable(label, table) {
  return h("div", { class: "table-scroll", role: "region", "aria-label": label, tabindex: "0" }, table);
}

export function field(label, control, hint) {
  const id = control.id;
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    control);
}

export function announce(message) {
  const announcer = document.getElementById("announcer");
  announcer.textContent = "";
  // A change the screen reader notices even when the same words are announced twice.
  requestAnimationFrame(() => { announcer.textContent = message; });
}
