// zoom-proxy example: list and create the signed-in user's Zoom meetings.
// Plain JavaScript, no build step. See README.md for how to serve it.
"use strict";

// When this tab last sent the user to sign in automatically, and whether they signed
// out here: both stop a 401 from redirecting again (no sign-in loops).
const AUTO_SIGN_IN_KEY = "zoom-proxy-example:auto-sign-in";
const SIGNED_OUT_KEY = "zoom-proxy-example:signed-out";
const AUTO_SIGN_IN_PAUSE_MS = 60_000;

const $ = (id) => document.getElementById(id);

class SignInNeeded extends Error {
  constructor(loginUrl) {
    super("Not signed in.");
    this.loginUrl = loginUrl;
  }
}

class ProxyUnreachable extends Error {}

function originOf(value) {
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:" ? url.origin : null;
  } catch {
    return null;
  }
}

function isLoopback(origin) {
  const host = new URL(origin).hostname;
  return host === "localhost" || host === "127.0.0.1" || host === "[::1]";
}

// The proxy's origin, or "" when the proxy serves this page's own origin.
// `?proxy=` is a development convenience and only accepted for a loopback origin:
// otherwise any link could point this page at any server, which would then choose
// where "Sign in" goes. Deployments set data-proxy on <html>.
function proxyBase() {
  const fromQuery = new URLSearchParams(location.search).get("proxy");
  let configured = document.documentElement.dataset.proxy || "";
  if (fromQuery !== null) {
    const origin = originOf(fromQuery);
    if (origin !== null && isLoopback(origin)) {
      configured = origin;
    } else {
      console.warn("?proxy= ignored: only loopback origins are accepted there; set data-proxy");
    }
  }
  if (!configured) return "";
  const origin = originOf(configured);
  if (origin === null) throw new Error(`data-proxy is not an http(s) origin: ${configured}`);
  return origin === location.origin ? "" : origin;
}

let base = "";
let proxyOrigin = location.origin;

async function call(path, init = {}) {
  let response;
  try {
    response = await fetch(base + path, {
      ...init,
      credentials: "include",
      headers: { Accept: "application/json", ...init.headers },
    });
  } catch {
    throw new ProxyUnreachable(
      base
        ? `Cannot reach zoom-proxy at ${base}. Is ${location.origin} in its cors.allowed_origins?`
        : "Cannot reach zoom-proxy.",
    );
  }
  const body = await response.json().catch(() => null); // 204 has no body
  if (response.status === 401) throw new SignInNeeded(body?.login_url);
  if (!response.ok) throw new Error(body?.message || `${path} answered ${response.status}.`);
  return body;
}

// Where "Sign in" goes: the proxy's login_url, kept on the proxy's origin, with a
// `next` the proxy accepts. The proxy only redirects to its own local paths after
// sign-in, so this page comes back only when it is served on the proxy's origin;
// from another origin the user lands on the proxy's home page.
function signInUrl(loginUrl) {
  let url = null;
  try {
    url = new URL(loginUrl, proxyOrigin);
  } catch {
    url = null;
  }
  if (url === null || url.origin !== proxyOrigin || url.pathname !== "/auth/login") {
    url = new URL("/auth/login", proxyOrigin);
  }
  url.searchParams.set("next", base ? "/" : location.pathname + location.search);
  return url.href;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function show(section) {
  $("signed-in").hidden = section !== "signed-in";
  $("signed-out").hidden = section !== "signed-out";
}

function needSignIn(loginUrl) {
  const target = signInUrl(loginUrl);
  $("sign-in").href = target;
  const signedOut = sessionStorage.getItem(SIGNED_OUT_KEY) !== null;
  const lastAuto = Number(sessionStorage.getItem(AUTO_SIGN_IN_KEY) || 0);
  if (!signedOut && Date.now() - lastAuto > AUTO_SIGN_IN_PAUSE_MS) {
    sessionStorage.setItem(AUTO_SIGN_IN_KEY, String(Date.now()));
    setStatus("Signing in with Zoom…");
    location.assign(target);
    return;
  }
  show("signed-out");
  if (signedOut) {
    setStatus("You are signed out.");
  } else if (base) {
    setStatus("Sign in with Zoom, then come back to this page.");
  } else {
    setStatus("Still signed out after signing in: does this browser block cookies?", true);
  }
}

function fail(error) {
  if (error instanceof SignInNeeded) {
    needSignIn(error.loginUrl);
  } else {
    setStatus(error.message, true);
  }
}

function displayName(user) {
  return `${user.first_name || ""} ${user.last_name || ""}`.trim() || user.email || user.id;
}

function meetingItem(meeting) {
  const item = document.createElement("li");
  const topic = document.createElement("strong");
  topic.textContent = meeting.topic || "(no topic)";
  item.append(topic);
  const start = new Date(meeting.start_time);
  if (!Number.isNaN(start.getTime())) {
    const when = document.createElement("div");
    when.className = "when";
    when.textContent = start.toLocaleString();
    item.append(when);
  }
  if (typeof meeting.join_url === "string" && meeting.join_url.startsWith("https://")) {
    const join = document.createElement("a");
    join.href = meeting.join_url;
    join.textContent = "Join";
    join.target = "_blank";
    join.rel = "noopener noreferrer";
    item.append(join);
  }
  return item;
}

async function listMeetings() {
  const page = await call("/api/users/me/meetings");
  const meetings = Array.isArray(page?.meetings) ? page.meetings : [];
  $("meetings").replaceChildren(...meetings.map(meetingItem));
  $("no-meetings").hidden = meetings.length > 0;
}

async function load() {
  const [me] = await Promise.all([call("/auth/me"), listMeetings()]);
  sessionStorage.removeItem(AUTO_SIGN_IN_KEY);
  sessionStorage.removeItem(SIGNED_OUT_KEY);
  $("user-name").textContent = displayName(me.user);
  show("signed-in");
  setStatus("");
}

async function createMeeting(event) {
  event.preventDefault();
  const input = $("topic");
  const topic = input.value.trim();
  if (!topic) return;
  const button = event.target.querySelector("button");
  button.disabled = true;
  try {
    const meeting = await call("/api/users/me/meetings", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ topic, type: 2 }),
    });
    input.value = "";
    await listMeetings();
    setStatus(`Created “${meeting.topic}”.`);
  } catch (error) {
    fail(error);
  } finally {
    button.disabled = false;
  }
}

async function signOut() {
  try {
    await call("/auth/logout", { method: "POST" });
  } catch (error) {
    if (!(error instanceof SignInNeeded)) {
      fail(error);
      return;
    }
  }
  sessionStorage.setItem(SIGNED_OUT_KEY, "1");
  $("sign-in").href = signInUrl(null);
  $("meetings").replaceChildren();
  show("signed-out");
  setStatus("You are signed out.");
}

function main() {
  try {
    base = proxyBase();
  } catch (error) {
    setStatus(error.message, true);
    return;
  }
  proxyOrigin = base || location.origin;
  $("create").addEventListener("submit", createMeeting);
  $("sign-out").addEventListener("click", signOut);
  $("sign-in").addEventListener("click", () => {
    // A deliberate sign-in: allow the next 401 to redirect automatically again.
    sessionStorage.removeItem(SIGNED_OUT_KEY);
    sessionStorage.setItem(AUTO_SIGN_IN_KEY, String(Date.now()));
  });
  load().catch(fail);
}

main();
