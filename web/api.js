// Reads of the JSON API. Its errors are JSON {"error": "..."}; a 503 says when to retry.

// A server that requires a token is opened as /?token=...: the page passes it on with
// every request for market data (as a query parameter, since EventSource sets no headers).
const token = new URLSearchParams(location.search).get("token");

/** `path` with the page's token, when it was given one. */
export function withToken(path) {
  if (!token) return path;
  return `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
}

export class ApiError extends Error {
  constructor(status, message, retryAfterMs) {
    super(message);
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/** The JSON at `path`; throws ApiError for an error answer, TypeError if unreachable. */
export async function getJSON(path) {
  const response = await fetch(withToken(path), { headers: { Accept: "application/json" } });
  if (response.ok) return response.json();
  const body = await response.json().catch(() => null);
  const retryAfter = Number(response.headers.get("Retry-After"));
  throw new ApiError(
    response.status,
    body?.error ?? `HTTP ${response.status}`,
    retryAfter > 0 ? retryAfter * 1000 : null,
  );
}
