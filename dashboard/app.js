// The dashboard's entry point: signs in, then routes on the URL's fragment (#/jobs, #/jobs/<id>, #/submit,
// #/signin). Each page renders into <main> and returns a function that stops what it started (polling, streams).
import { currentUser, loadSignIn, signedIn, signInConfig, signOut } from "./auth.js";
import { h, replace } from "./dom.js";
import { jobPage } from "./job.js";
import { jobsPage } from "./jobs.js";
import { signInPage } from "./signin.js";
import { submitPage } from "./submit.js";
import { afterSignIn, clearAlert, navigate, showAlert, showNextPageNotice } from "./ui.js";

const ROUTES = [
  { pattern: /^\/jobs\/([0-9a-f-]{36})$/i, page: jobPage, nav: "jobs" },
  { pattern: /^\/jobs$/, page: jobsPage, nav: "jobs" },
  { pattern: /^\/submit$/, page: submitPage, nav: "submit" },
  { pattern: /^\/signin$/, page: signInPage, nav: null, public: true },
];

let stopPage = () => {};
let firstRender = true;

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/jobs";
  const [path, query = ""] = raw.split("?");
  return { path, params: new URLSearchParams(query) };
}

function render() {
  const { path, params } = parseHash();
  const route = ROUTES.find((r) => r.pattern.test(path));
  if (!route) {
    navigate("#/jobs");
    return;
  }
  if (!route.public && !signedIn()) {
    sessionStorage.setItem("trawl.after-sign-in", location.hash || "#/jobs");
    navigate("#/signin");
    return;
  }
  stopPage();
  clearAlert();
  showNextPageNotice();
  renderChrome(route);
  const main = document.getElementById("main");
  const stop = route.page(main, { params, match: path.match(route.pattern) });
  stopPage = typeof stop === "function" ? stop : () => {};
  if (!firstRender) main.querySelector("h1")?.focus();
  firstRender = false;
}

function renderChrome(route) {
  const nav = document.getElementById("nav");
  const user = currentUser();
  nav.hidden = !user;
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.route === route.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const area = document.getElementById("user");
  if (!user) {
    area.replaceChildren();
    return;
  }
  replace(area,
    h("span", { class: "user-name" }, user.name),
    h("span", { class: "user-roles" }, (user.roles || []).join(", ") || "no roles"),
    h("button", { type: "button", class: "button-secondary", onclick: onSignOut }, "Sign out"));
}

async function onSignOut() {
  await signOut();
  navigate("#/signin");
}

async function start() {
  document.getElementById("skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    document.getElementById("main").focus();
  });
  try {
    await loadSignIn();
  } catch (error) {
    replace(document.getElementById("main"), h("h1", { tabindex: "-1" }, "Trawl"));
    showAlert(error, { heading: "The dashboard could not start" });
    return;
  }
  window.addEventListener("hashchange", render);
  if (signInConfig().sign_in === "entra" && signedIn() && location.hash.startsWith("#/signin")) afterSignIn();
  else render();
}

start();
