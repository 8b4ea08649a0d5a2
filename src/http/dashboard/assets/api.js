// Requests to the server's JSON routes, the admin API key, and the message line.

const KEY_STORAGE = "diffmart.adminKey";

/** The admin API key, kept for this browser tab only. */
export function adminKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function bindAdminKey(input) {
  input.value = adminKey();
  input.addEventListener("change", () => sessionStorage.setItem(KEY_STORAGE, input.value.trim()));
}

/** Sends a request and returns its JSON answer; throws an Error carrying the server's `error`. */
export async function request(method, path, { body, admin = false } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (admin) {
    if (!adminKey()) throw new Error("enter the admin API key (top right) first");
    headers["X-API-Key"] = adminKey();
  }
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let answer = null;
  try { answer = await response.json(); } catch { /* an answer without a body */ }
  if (!response.ok) {
    throw new Error((answer && answer.error) || `${method} ${path}: HTTP ${response.status}`);
  }
  return answer;
}

let messageTimer = null;

/** Shows a message above the page for a while; errors stay longer. */
export function say(text, { error = false } = {}) {
  const line = document.getElementById("message");
  line.textContent = text;
  line.className = error ? "error" : "";
  line.hidden = false;
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => { line.hidden = true; }, error ? 10000 : 4000);
}

/** Runs an action of a button, saying how it went. */
export async function act(action, done) {
  try {
    const answer = await action();
    if (done) say(typeof done === "function" ? done(answer) : done);
    return answer;
  } catch (e) {
    say(e.message, { error: true });
    return undefined;
  }
}
