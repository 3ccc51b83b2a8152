// The 15 data services of the gRPC mirror (GRPC.md §4), each bound to the HTTP endpoint it
// mirrors: the request field becomes that endpoint's query parameter, and the endpoint's own
// resolve (key rule, auth) and render (the view) do the rest. Nothing about keys or auth is
// decided here — except the two places where the original's gRPC API differs in its text.
import { status as Status } from '@grpc/grpc-js';
import { NO_PERMISSION, SUPER_REQUIRED, TOO_MANY_DEAD, UNKNOWN_CALLER } from '../api/endpoints/common.js';
import type { Answer, ApiRequest } from '../api/types.js';

export interface ServiceSpec {
  /** Service name in package `message`. */
  readonly name: string;
  /** Path of the HTTP endpoint it mirrors. */
  readonly path: string;
  /** The request's one field (lainlet.proto) and the query parameter it stands for. */
  readonly field?: string;
  readonly param?: string;
  readonly watch: boolean;
  /** When the field is empty: refused with this text before any auth (Podgroup). */
  readonly requiredText?: string;
  /**
   * "*" (once the endpoint's auth let it through) is every key. HTTP /v2/procwatcher looks up
   * "*\/" there, which matches nothing; the original's gRPC Podgroup kept "*" (GRPC.md §4).
   */
  readonly starIsAll?: boolean;
}

const appService = (name: string, path: string): ServiceSpec => ({ name, path, field: 'Appname', param: 'appname', watch: true });

export const SERVICES: readonly ServiceSpec[] = [
  { name: 'Appname', path: '/appname', field: 'ip', param: 'ip', watch: false },
  { name: 'Apps', path: '/v2/appswatcher', watch: true },
  { name: 'Backupctl', path: '/v2/backupspec', field: 'Appname', param: 'appname', watch: true },
  { name: 'Config', path: '/v2/configwatcher', field: 'Target', param: 'target', watch: true },
  { name: 'Containers', path: '/v2/containers', field: 'Nodename', param: 'nodename', watch: true },
  appService('Coreinfo', '/v2/coreinfowatcher'),
  { name: 'Depends', path: '/v2/depends', field: 'Target', param: 'target', watch: true },
  // HTTP /v2/localspecquery's rule, including its default: an empty Nodeip is the -ip node
  // (the original's gRPC said "empty key" there, GRPC.md §9.4; with no -ip it still does).
  { name: 'Localspec', path: '/v2/localspecquery', field: 'Nodeip', param: 'nodeip', watch: false },
  { name: 'Nodes', path: '/v2/nodes', field: 'Name', param: 'name', watch: true },
  // The original's gRPC text, typo included (HTTP says "appname required"; GRPC.md §3.4).
  { name: 'Podgroup', path: '/v2/procwatcher', field: 'Appname', param: 'appname', watch: true, requiredText: 'appname reequired', starIsAll: true },
  appService('Proxy', '/v2/proxywatcher'),
  appService('RebellionLocalprocs', '/v2/rebellion/localprocs'),
  appService('StreamrouterPorts', '/v2/streamrouter/ports'),
  appService('StreamrouterStreamprocs', '/v2/streamrouter/streamprocs'),
  appService('WebrouterWebprocs', '/v2/webrouter/webprocs'),
];

/**
 * The caller's IP from grpc-js's peer string ("127.0.0.1:5000", "::ffff:10.0.0.1:5000",
 * "::1:5000"): everything after the last ":" is the port (GRPC.md §3.1).
 */
export function peerIp(peer: string): string {
  const colon = peer.lastIndexOf(':');
  const ip = colon < 0 ? peer : peer.slice(0, colon);
  const bare = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip;
  return bare.startsWith('::ffff:') && bare.indexOf('.') > 0 ? bare.slice(7) : bare;
}

/** The ApiRequest the mirrored endpoint reads: the request field as its query parameter. */
export function apiRequest(spec: ServiceSpec, value: string, remoteIp: string): ApiRequest {
  return { path: spec.path, remoteIp, query: (name) => (name === spec.param ? value : '') };
}

export interface GrpcError {
  code: Status;
  details: string;
}

const AUTH_TEXTS = new Set([SUPER_REQUIRED, NO_PERMISSION, UNKNOWN_CALLER]);

/**
 * The status for an error answer of a view. The original returned UNKNOWN for everything; the
 * texts stay, the codes say what happened (GRPC.md §9.6: grpcclient callers only test err).
 */
export function errorOf(answer: Answer): GrpcError {
  const details = answer.body;
  if (AUTH_TEXTS.has(details)) return { code: Status.PERMISSION_DENIED, details };
  if (details === TOO_MANY_DEAD) return { code: Status.FAILED_PRECONDITION, details };
  if (details.startsWith('unkown address ')) return { code: Status.NOT_FOUND, details };
  if (answer.status === 400 || details === 'empty key') return { code: Status.INVALID_ARGUMENT, details };
  if (answer.status === 503) return { code: Status.UNAVAILABLE, details };
  return { code: Status.INTERNAL, details };
}
