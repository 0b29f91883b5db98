// Signing in. `config.json` says how: devhost's dev tokens (a user name and roles, no password) or Entra ID
// through MSAL.js (authorization code with PKCE, redirect flow). Either way the API gets a bearer token.

const DEV_SESSION = "trawl.dev-session";
const RENEW_SECONDS = 120;
const MSAL_SCRIPT = new URL("./vendor/msal-browser.min.js", import.meta.url);

let config = null;
let msalApp = null;

export async function loadSignIn() {
  const response = await fetch(new URL("./config.json", document.baseURI), { cache: "no-store" });
  if (!response.ok) throw new Error(`the dashboard's configuration did not load (HTTP ${response.status})`);
  config = await response.json();
  if (config.sign_in === "entra") await startMsal();
  return config;
}

export function signInConfig() {
  return config;
}

export function signedIn() {
  if (config.sign_in === "dev") return devSession() !== null;
  if (config.sign_in === "entra") return msalApp.getActiveAccount() !== null;
  return false;
}

// Who is signed in, for the page only: the API decides what they may do.
export function currentUser() {
  if (config.sign_in === "dev") {
    const session = devSession();
    return session && { name: session.user, roles: session.roles };
  }
  const account = msalApp?.getActiveAccount();
  return account && { name: account.name || account.username, roles: rolesOf(lastEntraToken) };
}

export function isAdmin() {
  return Boolean(currentUser()?.roles?.includes("Jobs.Admin"));
}

export async function accessToken() {
  if (config.sign_in === "dev") return devToken();
  if (config.sign_in === "entra") return entraToken();
  throw new Error("signing in is not configured");
}

export async function devSignIn(user, roles) {
  const response = await fetch(config.token_url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ user, roles, tenant: config.tenant, audience: config.audience }),
    cache: "no-store",
  });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    throw Object.assign(new Error(problem.detail || `the dev token route answered ${response.status}`),
                        { title: problem.title || "Sign-in failed", status: response.status });
  }
  const { access_token: token, expires_in: seconds } = await response.json();
  const session = { user, roles, token, expires: Date.now() / 1000 + seconds };
  sessionStorage.setItem(DEV_SESSION, JSON.stringify(session));
  return session;
}

export async function entraSignIn() {
  await msalApp.loginRedirect({ scopes: config.scopes });
}

export async function signOut() {
  sessionStorage.removeItem(DEV_SESSION);
  if (config.sign_in === "entra" && msalApp.getActiveAccount()) {
    await msalApp.logoutRedirect({ account: msalApp.getActiveAccount() });
  }
}

function devSession() {
  try {
    return JSON.parse(sessionStorage.getItem(DEV_SESSION));
  } catch {
    return null;
  }
}

async function devToken() {
  const session = devSession();
  if (!session) throw Object.assign(new Error("You are signed out."), { status: 401 });
  if (session.expires - RENEW_SECONDS > Date.now() / 1000) return session.token;
  return (await devSignIn(session.user, session.roles)).token;
}

let lastEntraToken = null;

async function startMsal() {
  await loadScript(MSAL_SCRIPT);
  const here = new URL(document.baseURI);
  const redirectUri = `${here.origin}${here.pathname}`;
  msalApp = new globalThis.msal.PublicClientApplication({
    auth: { clientId: config.client_id, authority: config.authority, redirectUri, postLogoutRedirectUri: redirectUri },
    cache: { cacheLocation: "sessionStorage" },
  });
  await msalApp.initialize();
  const result = await msalApp.handleRedirectPromise();
  const account = result?.account ?? msalApp.getAllAccounts()[0] ?? null;
  msalApp.setActiveAccount(account);
  if (result?.accessToken) lastEntraToken = result.accessToken;
}

async function entraToken() {
  const account = msalApp.getActiveAccount();
  if (!account) throw Object.assign(new Error("You are signed out."), { status: 401 });
  const request = { scopes: config.scopes, account };
  try {
    // Cached token or refresh token only: no hidden iframe, so the CSP needs no frame-src.
    const result = await msalApp.acquireTokenSilent(
      { ...request, cacheLookupPolicy: globalThis.msal.CacheLookupPolicy.AccessTokenAndRefreshToken });
    lastEntraToken = result.accessToken;
    return result.accessToken;
  } catch (error) {
    await msalApp.acquireTokenRedirect(request);
    throw error;
  }
}

function rolesOf(token) {
  if (!token) return [];
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).roles ?? [];
  } catch {
    return [];
  }
}

function loadScript(url) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = url.href;
    script.addEventListener("load", resolve);
    script.addEventListener("error", () => reject(new Error(`${url.pathname} did not load`)));
    document.head.append(script);
  });
}
