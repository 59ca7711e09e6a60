// A tiny client of the cmsv6 Open API with nothing but Node's built-ins (fetch): the helper
// the examples here share. Settings from the environment: CMSV6_URL (default
// http://127.0.0.1:8080, what `make demo` serves), CMSV6_USER, CMSV6_PASSWORD.

export const URL_ = (process.env.CMSV6_URL ?? "http://127.0.0.1:8080").replace(/\/$/, "");
const USER = process.env.CMSV6_USER ?? "demo";
const PASSWORD = process.env.CMSV6_PASSWORD ?? "demo-password";

// An error answer: its HTTP status and the API's stable code (docs/api.md).
export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    Object.assign(this, {status, code});
  }
}

// One request; the decoded JSON answer, or an ApiError.
export async function call(method, path, {body, token, query} = {}) {
  const url = URL_ + path + (query ? "?" + new URLSearchParams(query) : "");
  const headers = {"content-type": "application/json"};
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(url, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  const answer = await response.json();
  if (!response.ok) throw new ApiError(response.status, answer.error?.code, answer.error?.message);
  return answer;
}

// Log in; the bearer token (valid for hours: keep it, do not log in per request).
export async function login() {
  return (await call("POST", "/api/v1/login", {body: {username: USER, password: PASSWORD}})).token;
}
