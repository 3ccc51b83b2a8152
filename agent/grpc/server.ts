// The gRPC mirror of the /v2 API (GRPC.md): the original lainlet's 16 services on -grpc.addr,
// cleartext or TLS, over the same endpoints, answer cache and stream groups as the HTTP API.
//
// A Get is the endpoint's current answer in the service's message. A Watch sends the current
// answer first, then joins the HTTP event streams' group for its (endpoint, scope): every
// answer the group renders for a change — once, for all HTTP and gRPC watchers alike — goes
// out where HTTP sends `update`/`delete`, and an `error` answer ends the stream with its status.
// Each answer is converted and protobuf-encoded once (WeakMap by answer), whatever the number
// of callers. A stream whose client lets more than maxBufferedBytes pile up unsent is reset
// (RST_STREAM ENHANCE_YOUR_CALM, which clients see as RESOURCE_EXHAUSTED), as a slow HTTP
// stream is disconnected: it is never left silently stale.
import { constants as http2 } from 'node:http2';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { AnswerCache } from '../api/answers.js';
import type { Answer, Endpoint } from '../api/types.js';
import type { IndexChanges, IndexName } from '../indexes/changes.js';
import type { StreamHub } from '../streams.js';
import { SHAPES, type Message } from './shapes.js';
import { SERVICES, apiRequest, errorOf, peerIp, type GrpcError, type ServiceSpec } from './services.js';

/** lainlet.proto sits beside this module: agent/grpc/ under tsx, dist/agent/grpc/ (copied by `npm run build`) when built. */
export const PROTO_PATH = fileURLToPath(new URL('./lainlet.proto', import.meta.url));

/** Field names exactly as in the .proto (GRPC.md §7): `Data`, `pods`, `ip`, … */
export const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true };

export function loadProto(): protoLoader.PackageDefinition {
  return protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS);
}

export interface GrpcTls {
  keyFile: string;
  certFile: string;
}

export interface GrpcOptions {
  endpoints: Endpoint[];
  answers: AnswerCache;
  streams: StreamHub;
  /** Non-null while the agent has no state: every data call fails UNAVAILABLE with it. */
  notReadyReason: () => string | null;
  version: string;
  /** Per index: how many keys it holds (Lainlet.Status TotalKeys). */
  keysByIndex: () => Record<IndexName, number>;
  maxBufferedBytes: number;
}

export interface GrpcStats {
  /** Open Watch streams. */
  open: number;
  repliesSent: number;
  closedSlow: number;
  /** "/message.Config/Get" → status code name → calls ended. */
  calls: Map<string, Map<string, number>>;
}

/** Status's watcher names (GRPC.md §6) for the agent's indexes. */
const WATCHERS: Record<string, IndexName> = {
  configwatcher: 'config', containerwatcher: 'containers', podgroupwatcher: 'podgroups', dependswatcher: 'depends', nodeswatcher: 'nodes',
};

/** A request the server could not decode: answered INVALID_ARGUMENT by the handler, not INTERNAL by the library. */
class Undecodable {
  constructor(readonly message: string) {}
}

type Request = Record<string, unknown> | Undecodable;
type Serializer = (value: unknown) => Buffer;

interface LastChange { at: number; key: string; deleted: boolean; count: number }

export class GrpcApi {
  readonly server = new grpc.Server();
  readonly stats: GrpcStats = { open: 0, repliesSent: 0, closedSlow: 0, calls: new Map() };
  private readonly routes = new Map<string, Endpoint>();
  /** Encoded replies by answer: one encoding per rendered answer, shared by every caller. */
  private readonly encoded = new WeakMap<Answer, Buffer | GrpcError>();
  private readonly closers = new Set<() => void>();
  private readonly lastChange = new Map<IndexName, LastChange>();
  private readonly watchers = new Map<IndexName, number>();

  constructor(private readonly opts: GrpcOptions) {
    for (const e of opts.endpoints) this.routes.set(e.path, e);
    const pkg = loadProto();
    for (const spec of SERVICES) this.addDataService(pkg, spec);
    this.addLainletService(pkg);
  }

  /** Binds host:port (host "" = every interface); resolves the port bound. */
  async listen(host: string, port: number, tls?: GrpcTls): Promise<number> {
    const credentials = tls ? serverCredentials(tls) : grpc.ServerCredentials.createInsecure();
    const bind = (h: string) => new Promise<number>((resolve, reject) => {
      this.server.bindAsync(`${h.includes(':') ? `[${h}]` : h}:${port}`, credentials, (err, bound) => (err ? reject(err) : resolve(bound)));
    });
    if (host !== '') return bind(host);
    // Go's ":9000" is every interface, IPv6 and IPv4; a host without IPv6 still gets IPv4.
    try { return await bind('::'); } catch { return bind('0.0.0.0'); }
  }

  /** Every stream ends (CANCELLED for the client) and the listener closes. */
  close(): void {
    for (const close of [...this.closers]) close();
    this.server.forceShutdown();
  }

  /** After every cache change (agent.ts), with what the indexes say it touched: for Status. */
  changed(changes: IndexChanges): void {
    for (const [index, keys] of Object.entries(changes) as Array<[IndexName, Array<{ key: string; deleted: boolean }>]>) {
      const last = keys[keys.length - 1];
      if (!last) continue;
      const prev = this.lastChange.get(index);
      this.lastChange.set(index, { at: Date.now(), key: last.key, deleted: last.deleted, count: (prev?.count ?? 0) + 1 });
    }
  }

  private count(method: string, code: grpc.status): void {
    let byCode = this.stats.calls.get(method);
    if (!byCode) this.stats.calls.set(method, (byCode = new Map<string, number>()));
    const name = grpc.status[code];
    byCode.set(name, (byCode.get(name) ?? 0) + 1);
  }

  private addDataService(pkg: protoLoader.PackageDefinition, spec: ServiceSpec): void {
    const endpoint = this.routes.get(spec.path);
    if (!endpoint) throw new Error(`gRPC service ${spec.name}: no endpoint ${spec.path}`);
    const service = pkg[`message.${spec.name}`] as grpc.ServiceDefinition;
    const get = service.Get;
    const serialize = get.responseSerialize as Serializer;
    const shape = SHAPES[spec.path];
    const definition = this.withRawReplies(service);
    const getPath = `/message.${spec.name}/Get`;
    const watchPath = `/message.${spec.name}/Watch`;

    const implementation: grpc.UntypedServiceImplementation = {
      Get: (call: grpc.ServerUnaryCall<Request, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        const done = (err: GrpcError | null, reply?: Buffer) => {
          this.count(getPath, err ? err.code : grpc.status.OK);
          if (err) callback(err);
          else callback(null, reply);
        };
        const resolved = this.resolve(spec, endpoint, call.request, call.getPeer());
        if ('code' in resolved) return done(resolved);
        const reply = this.encode(this.opts.answers.get(endpoint, resolved.scope), shape, serialize);
        if (!Buffer.isBuffer(reply)) return done(reply);
        done(null, reply);
      },
    };
    if (spec.watch) {
      implementation.Watch = (call: grpc.ServerWritableStream<Request, Buffer>) => {
        const resolved = this.resolve(spec, endpoint, call.request, call.getPeer());
        if ('code' in resolved) return this.fail(call, watchPath, resolved);
        this.watch(call, watchPath, endpoint, resolved.scope, (answer) => this.encode(answer, shape, serialize));
      };
    }
    this.server.addService(definition, implementation);
  }

  /** Request decoding that cannot fail in the library, and replies written as the bytes encode() made. */
  private withRawReplies(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
    const out: Record<string, grpc.MethodDefinition<Request, Buffer>> = {};
    for (const [name, method] of Object.entries(service)) {
      const decode = method.requestDeserialize;
      out[name] = {
        ...method,
        requestDeserialize: (bytes: Buffer): Request => {
          try {
            return decode(bytes) as Record<string, unknown>;
          } catch (err) {
            return new Undecodable(`cannot decode the request as message.${method.path.split('/')[1].split('.')[1]}Request: ${(err as Error).message}`);
          }
        },
        responseSerialize: (reply: Buffer) => reply,
      };
    }
    return out;
  }

  /** The scope a call asks for, or why it is refused: bad request, not synced, the endpoint's key and auth rules. */
  private resolve(spec: ServiceSpec, endpoint: Endpoint, request: Request, peer: string): { scope: string } | GrpcError {
    if (request instanceof Undecodable) return { code: grpc.status.INVALID_ARGUMENT, details: request.message };
    const raw = spec.field ? request[spec.field] : '';
    const value = typeof raw === 'string' ? raw : '';
    const notReady = this.opts.notReadyReason();
    if (notReady !== null) return { code: grpc.status.UNAVAILABLE, details: notReady };
    if (spec.requiredText && value === '') return { code: grpc.status.INVALID_ARGUMENT, details: spec.requiredText };
    const resolved = endpoint.resolve(apiRequest(spec, value, peerIp(peer)));
    if ('status' in resolved) return errorOf(resolved);
    return spec.starIsAll && value === '*' ? { scope: '' } : resolved;
  }

  /** The reply for an answer: its message encoded (once per answer), or the status of an error answer. */
  private encode(answer: Answer, shape: (body: unknown) => Message, serialize: Serializer): Buffer | GrpcError {
    let reply = this.encoded.get(answer);
    if (reply === undefined) {
      if (answer.status !== 200) {
        reply = errorOf(answer);
      } else {
        try {
          reply = serialize(shape(JSON.parse(answer.body)));
        } catch (err) {
          reply = { code: grpc.status.INTERNAL, details: `internal error encoding the reply: ${(err as Error).message}` };
        }
      }
      this.encoded.set(answer, reply);
    }
    return reply;
  }

  private fail(call: grpc.ServerWritableStream<Request, Buffer>, method: string, err: GrpcError): void {
    this.count(method, err.code);
    call.emit('error', err);
  }

  private watch(call: grpc.ServerWritableStream<Request, Buffer>, method: string, endpoint: Endpoint, scope: string, encode: (answer: Answer) => Buffer | GrpcError): void {
    let pending = 0;
    let ended = false;
    const end = () => {
      if (ended) return false;
      ended = true;
      subscription.close();
      this.closers.delete(cancel);
      this.stats.open--;
      this.watchers.set(endpoint.index, (this.watchers.get(endpoint.index) ?? 1) - 1);
      return true;
    };
    const cancel = () => { if (end()) { this.count(method, grpc.status.CANCELLED); resetStream(call, http2.NGHTTP2_CANCEL); } };
    const send = (reply: Buffer | GrpcError) => {
      if (ended) return;
      if (!Buffer.isBuffer(reply)) {
        end();
        this.fail(call, method, reply);
        return;
      }
      if (pending > this.opts.maxBufferedBytes) {
        end();
        this.stats.closedSlow++;
        this.count(method, grpc.status.RESOURCE_EXHAUSTED);
        resetStream(call, http2.NGHTTP2_ENHANCE_YOUR_CALM);
        return;
      }
      pending += reply.length;
      this.stats.repliesSent++;
      call.write(reply, () => { pending -= reply.length; });
    };
    const subscription = this.opts.streams.subscribe(endpoint, scope, (answer) => send(encode(answer)));
    this.stats.open++;
    this.watchers.set(endpoint.index, (this.watchers.get(endpoint.index) ?? 0) + 1);
    this.closers.add(cancel);
    // The client went away (cancel, connection lost, deadline): the server's side is over too.
    call.on('cancelled', () => { if (end()) this.count(method, grpc.status.CANCELLED); });
    send(encode(subscription.initial));
  }

  private addLainletService(pkg: protoLoader.PackageDefinition): void {
    const service = pkg['message.Lainlet'] as grpc.ServiceDefinition;
    const apiVersion = this.opts.version.split('.').slice(0, 2).join('.');
    const unary = (name: string, reply: () => Message) => (_call: grpc.ServerUnaryCall<unknown, Message>, callback: grpc.sendUnaryData<Message>) => {
      this.count(`/message.Lainlet/${name}`, grpc.status.OK);
      callback(null, reply());
    };
    this.server.addService(service, {
      Version: unary('Version', () => ({ Version: this.opts.version, APIVersion: apiVersion })),
      Status: unary('Status', () => this.status()),
    });
  }

  /** Lainlet.Status (GRPC.md §6) from the agent's indexes; LastEvent is Go-JSON-like, key relative to the index. */
  private status(): Message {
    const keys = this.opts.keysByIndex();
    const status: Record<string, Message> = {};
    for (const [watcher, index] of Object.entries(WATCHERS)) {
      const last = this.lastChange.get(index);
      const event = last
        ? { Action: last.deleted ? 3 : 2, Key: last.key, ModifiedIndex: last.count, Data: null }
        : { Action: 0, Key: '', ModifiedIndex: 0, Data: null };
      status[watcher] = {
        NumReceivers: this.watchers.get(index) ?? 0,
        // Go's zero time before any change, as the original.
        UpdateTime: last ? String(Math.floor(last.at / 1000)) : '-62135596800',
        LastEvent: Buffer.from(JSON.stringify(event)),
        TotalKeys: keys[index] ?? 0,
      };
    }
    return { Goroutines: (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length, Status: status };
  }
}

function serverCredentials(tls: GrpcTls): grpc.ServerCredentials {
  // The certificate first, as the original (its error names the file it could not open).
  const cert = readFileSync(tls.certFile);
  const key = readFileSync(tls.keyFile);
  return grpc.ServerCredentials.createSsl(null, [{ private_key: key, cert_chain: cert }], false);
}

interface Http2StreamLike { close(code: number): void; destroyed: boolean }
interface CallLike { call?: unknown; nextCall?: unknown; stream?: unknown }

/**
 * Resets the HTTP/2 stream under a server call. grpc-js offers no way for a handler to abort a
 * stream whose writes cannot drain (ending it waits for them), so this reaches the stream
 * through the call objects of @grpc/grpc-js 1.14 (call.call[.nextCall…].stream).
 */
function resetStream(call: grpc.ServerWritableStream<Request, Buffer>, code: number): void {
  let node = (call as unknown as CallLike).call as CallLike | undefined;
  for (let depth = 0; node && depth < 5; depth++) {
    const stream = node.stream as Partial<Http2StreamLike> | undefined;
    if (stream && typeof stream.close === 'function') {
      if (!stream.destroyed) stream.close(code);
      return;
    }
    node = node.nextCall as CallLike | undefined;
  }
  call.destroy();
}
