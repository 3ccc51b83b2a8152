// The boundary between the agent's data side (cache → indexes → endpoint views) and
// its HTTP side (routing, GET answers, event streams, the shared answer cache).
//
// The HTTP side never looks inside an index; the data side never touches a socket.
// The data side's own types live with it (agent/cache.ts, agent/indexes/).
import type { IndexName } from '../indexes/index.js';

/** A complete answer to a non-watch request: status and the exact body bytes (no trailing newline). */
export interface Answer {
  status: number;
  body: string;
}

/** What the API needs to know about a request. */
export interface ApiRequest {
  /** Route path without the optional trailing slash, e.g. "/v2/configwatcher". */
  path: string;
  /** Go's Request.FormValue: first value of the query parameter, "" when absent. */
  query(name: string): string;
  /** The TCP peer IP, normalised: "::ffff:1.2.3.4" is given as "1.2.3.4". */
  remoteIp: string;
}

export interface Endpoint {
  /** Route path, e.g. "/v2/configwatcher". */
  readonly path: string;
  /** False only for /v2/localspecquery. */
  readonly watchable: boolean;
  /** The index whose changes can change this endpoint's output. */
  readonly index: IndexName;
  /**
   * Parameter and auth checks. Returns the lookup key ("scope") in the index's key space
   * ("" = everything, e.g. for "*"), or an error Answer (400 for key/auth errors, 500 for
   * e.g. /v2/localspecquery's "empty key").
   */
  resolve(req: ApiRequest): { scope: string } | Answer;
  /**
   * Pure function of the current indexes and the scope: the 200 body, or an error Answer
   * (500 "over half of the containers lost their IPs" for webprocs/streamprocs).
   */
  render(scope: string): Answer;
}
