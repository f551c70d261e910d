/**
 * Refusals and their codes (docs/protocol.md, "Error codes"): what the client decides on. It
 * decides by `code` and `retry`, never by the text, which is for people and may be reworded.
 *
 * @module client/errors
 */

/** Every code the service sends, its status, and whether the same request sent again later can
 * succeed. A code the client does not know yet is decided by the reply's own `retry`. */
export const CODES = Object.freeze({
  bad_request: { status: 400, retry: false },
  unknown_action: { status: 400, retry: false },
  too_large: { status: 400, retry: false },
  too_many_channels: { status: 400, retry: false },
  forbidden: { status: 403, retry: false },
  not_member: { status: 403, retry: false },
  token_expired: { status: 401, retry: false }, // the connection is being closed: a new token
  not_registered: { status: 410, retry: true }, // reconnect first, then send again
  rate_limited: { status: 429, retry: true }, // every frame counts: everything waits
  conversation_busy: { status: 429, retry: true },
  too_many_connections: { status: 429, retry: false }, // $connect only (a browser never sees it)
  unavailable: { status: 500, retry: true },
  internal: { status: 500, retry: false },
});

/** A request the service refused (or the client itself, before sending: `local`). `text` is the
 * service's words for people; `code`, `status` and `retry` are what programs decide on. */
export class RefusalError extends Error {
  constructor(text, request, { local = false, code = null, status = null, retry = false } = {}) {
    super(text);
    this.name = "RefusalError";
    this.text = text;
    this.request = request;
    /** True when the client refused it itself, before sending (a frame over 32 KB). */
    this.local = local;
    this.code = code;
    this.status = status;
    this.retry = retry;
  }
}

/** A request that was still pending when the client was closed (or could not connect). */
export class ClosedError extends Error {
  constructor(message = "The chat client is closed.") {
    super(message);
    this.name = "ClosedError";
  }
}

/**
 * What to do about a refusal `{code, retry}`:
 * - "reconnect": the service has no row for this connection (`not_registered`): reconnect,
 *   then send the same request again;
 * - "expired": the token has expired (`token_expired`): the connection is being closed; only a
 *   new token helps;
 * - "wait": over the user's rate budget (`rate_limited`): every request waits, then this one
 *   goes again;
 * - "retry": a passing failure (`retry: true`): this request goes again later;
 * - "refuse": anything else: the refusal is the answer.
 */
export function decide({ code, retry }) {
  if (code === "not_registered") return "reconnect";
  if (code === "token_expired") return "expired";
  if (code === "rate_limited") return "wait";
  const known = Object.hasOwn(CODES, code) ? CODES[code].retry : retry === true;
  return known ? "retry" : "refuse";
}
