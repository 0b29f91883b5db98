// The sign-in page: a dev user and roles on devhost, or Microsoft Entra ID.
import { devSignIn, entraSignIn, signInConfig, signedIn } from "./auth.js";
import { field, h, replace } from "./dom.js";
import { afterSignIn, showAlert } from "./ui.js";

const ROLE_HINTS = {
  "Jobs.Read": "see your jobs and their results",
  "Jobs.Submit": "submit, cancel and retry jobs",
  "Jobs.Admin": "see every user's jobs",
};

export function signInPage(main) {
  document.title = "Sign in · Trawl";
  const config = signInConfig();
  if (config.sign_in === "dev") replace(main, devForm(config));
  else if (config.sign_in === "entra") replace(main, entraPanel());
  else replace(main, h("h1", { tabindex: "-1" }, "Sign in"), h("p", {}, config.detail));
  if (signedIn()) main.append(h("p", {}, "You are signed in. ", h("a", { href: "#/jobs" }, "Go to your jobs")));
}

function devForm(config) {
  const user = h("input", { id: "dev-user", name: "user", type: "text", required: true, autocomplete: "username",
                            value: "alice", pattern: "[A-Za-z0-9][A-Za-z0-9._@\\-]{0,63}", spellcheck: "false" });
  const roles = config.roles.map((role) => {
    const id = `role-${role.replace(".", "-").toLowerCase()}`;
    const box = h("input", { type: "checkbox", id, name: "roles", value: role, checked: role !== "Jobs.Admin" });
    return h("div", { class: "check" }, box, h("label", { for: id }, role, h("span", { class: "hint" }, ` — ${ROLE_HINTS[role] ?? ""}`)));
  });
  const button = h("button", { type: "submit", class: "button-primary" }, "Sign in");
  const form = h("form", { class: "panel form", novalidate: true, "aria-labelledby": "signin-heading" },
    field("User name", user, "Any name: the same name is always the same user, with the same jobs."),
    h("fieldset", {}, h("legend", {}, "Roles"), roles),
    button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!user.checkValidity()) {
      showAlert({ title: "Check the user name", detail: "Use 1 to 64 letters, digits and . _ @ -, starting with a letter or digit." });
      user.focus();
      return;
    }
    const chosen = [...form.querySelectorAll("input[name=roles]:checked")].map((box) => box.value);
    button.disabled = true;
    try {
      await devSignIn(user.value, chosen);
      afterSignIn();
    } catch (error) {
      showAlert(error);
      button.disabled = false;
    }
  });
  return [
    h("h1", { id: "signin-heading", tabindex: "-1" }, "Sign in (development)"),
    h("p", { class: "lead" }, "This Trawl runs on devhost, which issues development tokens: pick a user name and roles. ",
      "There is no password; these tokens are refused everywhere but here."),
    form,
  ];
}

function entraPanel() {
  const button = h("button", { type: "button", class: "button-primary" }, "Sign in with Microsoft");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await entraSignIn();
    } catch (error) {
      showAlert({ title: "Sign-in failed", detail: error.message });
      button.disabled = false;
    }
  });
  return [h("h1", { tabindex: "-1" }, "Sign in"),
          h("p", { class: "lead" }, "Sign in with your organisation's Microsoft account to see and submit jobs."),
          h("div", { class: "panel" }, button)];
}
