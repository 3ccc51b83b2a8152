// A gRPC client for the tests, built only from agent/grpc/lainlet.proto with @grpc/grpc-js and
// @grpc/proto-loader — what any client of the original's API would do — plus a TCP relay that
// makes the agent see the connection coming from a chosen local address (grpc-js cannot bind
// its sockets), and the comparison rules of golden/README.md for protobuf messages.
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const PROTO_FILE = fileURLToPath(new URL('../../agent/grpc/lainlet.proto', import.meta.url));

/** As the golden file: original field names, int64 as strings, enums by name, bytes base64, no defaults. */
const definition = protoLoader.loadSync(PROTO_FILE, { keepCase: true, longs: String, enums: String, bytes: String, defaults: false });
const pkg = grpc.loadPackageDefinition(definition) as unknown as { message: Record<string, grpc.ServiceClientConstructor> };

export type Msg = Record<string, unknown>;
export interface CallError { code: grpc.status; message: string }
export type UnaryResult = { reply: Msg } | { error: CallError };

export interface ClientTls { cert: Buffer; serverName?: string }

export class LainletClient {
  private readonly clients = new Map<string, grpc.Client>();

  constructor(readonly address: string, private readonly tls?: ClientTls) {}

  private client(service: string): grpc.Client {
    let c = this.clients.get(service);
    if (!c) {
      const Ctor = pkg.message[service];
      if (!Ctor) throw new Error(`no service ${service} in lainlet.proto`);
      const creds = this.tls ? grpc.credentials.createSsl(this.tls.cert) : grpc.credentials.createInsecure();
      const options = this.tls?.serverName ? { 'grpc.ssl_target_name_override': this.tls.serverName } : {};
      // One channel for all services, as grpcclient: the services share one connection.
      const first = this.clients.values().next().value;
      c = first ? new Ctor(this.address, creds, { ...options, channelOverride: first.getChannel() }) : new Ctor(this.address, creds, options);
      this.clients.set(service, c);
    }
    return c;
  }

  /** "/message.Config/Get" → the reply or the error status. Any path, also ones the .proto lacks (UNIMPLEMENTED). */
  call(rpc: string, request: Msg, deadlineMs = 20_000): Promise<UnaryResult> {
    const [service, method] = parseRpc(rpc);
    const known = pkg.message[service] ? service : 'Config';
    const { serialize, deserialize } = codecFor(service, method);
    return new Promise((resolve) => {
      this.client(known).makeUnaryRequest(rpc, serialize, deserialize, request, new grpc.Metadata(), { deadline: new Date(Date.now() + deadlineMs) },
        (err: grpc.ServiceError | null, reply?: Msg) => resolve(err ? { error: { code: err.code, message: err.details } } : { reply: reply ?? {} }));
    });
  }

  /** A unary call's reply as the bytes on the wire (no decoding). */
  raw(rpc: string, request: Msg): Promise<Buffer | CallError> {
    const [service, method] = parseRpc(rpc);
    const { serialize } = codecFor(service, method);
    return new Promise((resolve) => {
      this.client(service).makeUnaryRequest(rpc, serialize, (b: Buffer) => b, request, new grpc.Metadata(), { deadline: new Date(Date.now() + 20_000) },
        (err: grpc.ServiceError | null, reply?: Buffer) => resolve(err ? { code: err.code, message: err.details } : reply ?? Buffer.alloc(0)));
    });
  }

  watch(rpc: string, request: Msg): WatchStream {
    const [service, method] = parseRpc(rpc);
    const client = this.client(service);
    const call = (client as unknown as Record<string, (req: Msg) => grpc.ClientReadableStream<Msg>>)[method].call(client, request);
    return new WatchStream(call);
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}

function parseRpc(rpc: string): [string, string] {
  const m = /^\/message\.([^/]+)\/([^/]+)$/.exec(rpc);
  if (!m) throw new Error(`bad rpc ${rpc}`);
  return [m[1], m[2]];
}

/** The method's codecs from the .proto; for a method it lacks, its service's first method's (or none). */
function codecFor(service: string, method: string): { serialize: (x: Msg) => Buffer; deserialize: (b: Buffer) => Msg } {
  const svc = definition[`message.${service}`] as grpc.ServiceDefinition | undefined;
  const m = svc ? (svc[method] ?? Object.values(svc)[0]) : undefined;
  if (!m) return { serialize: () => Buffer.alloc(0), deserialize: () => ({}) };
  return { serialize: m.requestSerialize as (x: Msg) => Buffer, deserialize: m.responseDeserialize as (b: Buffer) => Msg };
}

export class WatchStream {
  readonly replies: Msg[] = [];
  /** The final status once the stream ended (CANCELLED after cancel()). */
  end?: CallError;
  private waiters: Array<() => void> = [];

  constructor(private readonly call: grpc.ClientReadableStream<Msg>) {
    call.on('data', (m: Msg) => { this.replies.push(m); this.wake(); });
    call.on('error', (err: grpc.ServiceError) => { this.end ??= { code: err.code, message: err.details }; this.wake(); });
    call.on('status', (s: grpc.StatusObject) => { this.end ??= { code: s.code, message: s.details }; this.wake(); });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves once `done()` holds (checked on every reply and at the end); rejects after timeoutMs. */
  until(done: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; got ${this.replies.length} replies, end ${JSON.stringify(this.end)}`)), timeoutMs);
      const check = () => {
        if (done()) { clearTimeout(timer); resolve(); return; }
        this.waiters.push(check);
      };
      check();
    });
  }

  replyCount(n: number, timeoutMs?: number): Promise<void> {
    return this.until(() => this.replies.length >= n || this.end !== undefined, `${n} replies`, timeoutMs);
  }

  ended(timeoutMs?: number): Promise<CallError> {
    return this.until(() => this.end !== undefined, 'the end of the stream', timeoutMs).then(() => this.end!);
  }

  cancel(): void {
    this.call.cancel();
  }
}

/**
 * A TCP relay on 127.0.0.1 whose connections reach host:port from `localAddress`: the agent's
 * peer is then that address (a container's, in a network namespace that has it on lo).
 */
export async function relayFrom(localAddress: string, host: string, port: number): Promise<{ address: string; close(): void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    const outbound = net.connect({ host, port, localAddress });
    for (const s of [inbound, outbound]) { sockets.add(s); s.on('close', () => sockets.delete(s)); s.on('error', () => { inbound.destroy(); outbound.destroy(); }); }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close() { for (const s of sockets) s.destroy(); server.close(); },
  };
}

// --- Comparing messages (golden/README.md, GRPC.md §11.3 step 6) ---

/**
 * The canonical form of a decoded message: default values, empty lists and empty maps dropped
 * (a null map value is an empty message, so it goes too), numbers as strings (int64 compares by
 * value), the `unordered` top-level repeated fields sorted.
 */
export function canon(value: unknown, unordered: readonly string[] = []): unknown {
  const c = canonValue(value);
  if (c && typeof c === 'object' && !Array.isArray(c)) {
    const o = c as Record<string, unknown>;
    for (const f of unordered) if (Array.isArray(o[f])) o[f] = [...(o[f] as unknown[])].sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
  }
  return c ?? {};
}

function canonValue(v: unknown): unknown {
  if (v === null || v === undefined || v === '' || v === 0 || v === '0' || v === false || v === 'STRING') return undefined;
  if (typeof v === 'number') return String(v);
  if (Array.isArray(v)) {
    const items = v.map((x) => canonValue(x) ?? {});
    return items.length === 0 ? undefined : items;
  }
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const c = canonValue((v as Record<string, unknown>)[k]);
      if (c !== undefined) out[k] = c;
    }
    return Object.keys(out).length === 0 ? undefined : out;
  }
  return v;
}
