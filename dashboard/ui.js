// What every page shares: moving between pages, and the alert region where API problems are shown.
import { h, replace } from "./dom.js";

export function navigate(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}

export function showAlert(error, { heading } = {}) {
  const alerts = document.getElementById("alerts");
  const title = heading || error.title || "Something went wrong";
  const details = (error.errors || []).map((e) => h("li", {}, describeError(e)));
  replace(alerts, h("div", { class: "alert" },
    h("p", { class: "alert-title" }, title),
    error.detail || error.message ? h("p", {}, error.detail || error.message) : null,
    details.length ? h("ul", {}, details) : null,
    h("button", { type: "button", class: "button-link", onclick: clearAlert }, "Dismiss")));
}

export function showNotice(message) {
  replace(document.getElementById("alerts"), h("div", { class: "notice" }, h("p", {}, message),
    h("button", { type: "button", class: "button-link", onclick: clearAlert }, "Dismiss")));
}

export function clearAlert() {
  document.getElementById("alerts").replaceChildren();
}

// A notice for the page the app is about to show (navigating clears the alert region).
let nextNotice = null;

export function noticeOnNextPage(message) {
  nextNotice = message;
}

export function showNextPageNotice() {
  if (nextNotice) showNotice(nextNotice);
  nextNotice = null;
}

function describeError(error) {
  const where = (error.loc || []).join(".");
  return where ? `${where}: ${error.msg}` : error.msg;
}

export function afterSignIn() {
  const target = sessionStorage.getItem("trawl.after-sign-in") || "#/jobs";
  sessionStorage.removeItem("trawl.after-sign-in");
  navigate(target === "#/signin" ? "#/jobs" : target);
}
