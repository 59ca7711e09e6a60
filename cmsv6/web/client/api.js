// The Open API (docs/api.md) from the page: `api(method, path, body)` answers the parsed
// JSON or throws an ApiError whose message is the API's words. The token lives in
// localStorage["cmsv6.token"] so that a reload keeps the user signed in; a 401 on any
// call but the login itself signs the page out (see onUnauthorized).

const TOKEN_KEY = "cmsv6.token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;  // 0: the server could not be reached
    this.code = code;
  }
}

let unauthorized = () => {};

/** fn(message) is called when the API refuses the token (401): the session is over. */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

export function getToken() {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** The response of one request, errors thrown as ApiError (for blobs and headers). */
export async function request(method, path, body) {
  const headers = {};
  const token = getToken();
  if (token) headers["Authorization"] = `Bearer ${token}`;
  const init = {method, headers, cache: "no-store"};
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "network", `The server cannot be reached (${method} ${path}): ${e.message}`);
  }
  if (response.ok) return response;
  const error = await errorOf(response, method, path);
  if (response.status === 401 && path !== "/api/v1/login") {
    setToken(null);
    unauthorized(`Signed out: ${error.message}. Sign in again.`);
  }
  throw error;
}

async function errorOf(response, method, path) {
  let code = `http_${response.status}`;
  let message = `${method} ${path} failed: HTTP ${response.status} ${response.statusText}`.trim();
  try {
    const answer = await response.json();
    if (answer && answer.error) {
      code = answer.error.code || code;
      message = answer.error.message || message;
    }
  } catch (e) {
    // Not JSON (a proxy's page, say): the status line is all there is to say.
  }
  if (response.status === 429) {
    const wait = response.headers.get("Retry-After");
    if (wait) message += ` (try again in ${wait} s)`;
  }
  return new ApiError(response.status, code, message);
}

/** The parsed JSON answer of `method path` with an optional JSON body. */
export async function api(method, path, body) {
  const response = await request(method, path, body);
  const text = await response.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch (e) {
    throw new ApiError(response.status, "bad_answer", `${method} ${path}: the answer is not JSON`);
  }
}

function nextLink(header) {
  if (!header) return null;
  const match = /<([^>]+)>\s*;\s*rel="?next"?/.exec(header);
  return match ? match[1] : null;
}

/** Every item of a plain paged list (GET /api/v1/devices...), following `Link: rel=next`,
 * at most `maxPages` pages. */
export async function allPages(path, maxPages = 100) {
  const items = [];
  let next = path;
  for (let page = 0; next && page < maxPages; page++) {
    const response = await request("GET", next);
    items.push(...(await response.json()));
    next = nextLink(response.headers.get("Link"));
  }
  return items;
}

/** Items of a time-ordered log (positions, alarms): `key` of each page, passing `next` back
 * as `after` until it is null or `maxItems` are read. Answers {items, complete}. */
export async function logPages(path, key, maxItems = 50000) {
  const items = [];
  let after = null;
  for (;;) {
    const separator = path.includes("?") ? "&" : "?";
    const url = after === null ? path : `${path}${separator}after=${encodeURIComponent(after)}`;
    const answer = await api("GET", url);
    items.push(...answer[key]);
    after = answer.next;
    if (after === null || after === undefined) return {items, complete: true};
    if (items.length >= maxItems) return {items, complete: false};
  }
}
