// Replays golden/grpc-cluster-small.json — the original lainlet's gRPC answers — against a hub
// and an agent on a real etcd (GRPC.md §11.3): every call, from every recorded source address
// (127.0.0.1 and the container addresses), every watch across the six mutations, the after-state,
// and the calls that crashed the original. test/grpc/replay.ts does the calls inside a private
// network namespace holding the container addresses (as the recording did); this file compares.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { readReferenceJson } from './helpers/reference.js';
import { REPO_ROOT } from '../testkit/paths.js';
import { VERSION } from '../shared/version.js';
import { canon, type Msg, type UnaryResult } from './grpc/client.js';
import type { GoldenCall, GrpcGolden, ReplayResult } from './grpc/replay.js';

const golden = readReferenceJson<GrpcGolden>('golden/grpc-cluster-small.json');
const http = readReferenceJson<{ plain: Array<{ path: string; from: string; status: number; body: string }> }>('golden/cluster-small.json');

/**
 * The agent's codes for the original's error texts (all UNKNOWN there; GRPC.md §9.6 — the texts
 * stay, the codes say what happened).
 */
function codeFor(message: string): status {
  if (message.startsWith('authorize failed')) return status.PERMISSION_DENIED;
  if (message === 'over half of the containers lost their IPs') return status.FAILED_PRECONDITION;
  if (message.startsWith('unkown address ')) return status.NOT_FOUND;
  if (message === 'appname reequired' || message === 'empty key') return status.INVALID_ARGUMENT;
  throw new Error(`no code for ${message}`);
}

type Expected = { reply: Msg; unordered?: string[] } | { error: { code: status; message: string | RegExp } } | { check: (r: UnaryResult) => string | undefined };

/** Where the agent answers otherwise, by "<label> <rpc> <request> from <address>" (GRPC.md §11.3 step 7). */
const DEVIATIONS: Record<string, Expected> = {
  // HTTP's rule (API.md): an empty nodeip is the -ip node; nothing runs on 127.0.0.1.
  'calls /message.Localspec/Get {} from 127.0.0.1': { reply: {} },
  // grpc-js's own texts for an unknown method or service (the code is the original's).
  'calls /message.Localspec/Watch {} from 127.0.0.1': { error: { code: status.UNIMPLEMENTED, message: /\/message\.Localspec\/Watch/ } },
  'calls /message.Nosuch/Get {} from 127.0.0.1': { error: { code: status.UNIMPLEMENTED, message: /\/message\.Nosuch\/Get/ } },
  // API.md §11.5: 172.20.0.11 moved to 172.20.0.99; the agent's tables forget the old address.
  'after /message.Appname/Get {"ip":"172.20.0.11"} from 127.0.0.1': { error: { code: status.NOT_FOUND, message: 'unkown address 172.20.0.11' } },
  'after /message.Coreinfo/Get {} from 172.20.0.11': { error: { code: status.PERMISSION_DENIED, message: 'authorize failed, can not confirm the app by request ip' } },
};

/** Version: the agent's own (API.md §11.9). Status: the shape only (§11.3 step 6). */
function lainletCheck(rpc: string): Expected | undefined {
  if (rpc === '/message.Lainlet/Version') return { reply: { Version: VERSION, APIVersion: VERSION.split('.').slice(0, 2).join('.') } };
  if (rpc !== '/message.Lainlet/Status') return undefined;
  return {
    check(r) {
      if (!('reply' in r)) return `error ${JSON.stringify(r.error)}`;
      const s = r.reply.Status as Record<string, Record<string, unknown>> | undefined;
      const keys = Object.keys(s ?? {}).sort().join(',');
      if (keys !== 'configwatcher,containerwatcher,dependswatcher,nodeswatcher,podgroupwatcher') return `Status keys ${keys}`;
      if (r.reply.Goroutines !== undefined && typeof r.reply.Goroutines !== 'number') return 'Goroutines not int32';
      for (const [name, w] of Object.entries(s!)) {
        if (typeof w.UpdateTime !== 'string' || !/^-?\d+$/.test(w.UpdateTime)) return `${name}.UpdateTime not int64`;
        if (typeof w.LastEvent !== 'string') return `${name}.LastEvent not bytes`;
        const event = JSON.parse(Buffer.from(w.LastEvent, 'base64').toString()) as Record<string, unknown>;
        if (Object.keys(event).join(',') !== 'Action,Key,ModifiedIndex,Data') return `${name}.LastEvent ${JSON.stringify(event)}`;
        if (w.TotalKeys !== undefined && typeof w.TotalKeys !== 'number') return `${name}.TotalKeys not int32`;
      }
      return undefined;
    },
  };
}

function expectedOf(label: string, c: GoldenCall): Expected {
  const deviation = DEVIATIONS[`${label} ${c.rpc} ${JSON.stringify(c.request)} from ${c.from}`] ?? lainletCheck(c.rpc);
  if (deviation) return deviation;
  if (c.error) return { error: { code: codeFor(c.error.message), message: c.error.message } };
  return { reply: c.reply ?? {}, unordered: c.unordered };
}

/** Why `got` is not `want`, or undefined. */
function mismatch(got: UnaryResult, want: Expected): string | undefined {
  if ('check' in want) return want.check(got);
  if ('error' in want) {
    if (!('error' in got)) return `wanted error ${String(want.error.message)}, got a reply`;
    if (got.error.code !== want.error.code) return `code ${got.error.code} (${got.error.message}), wanted ${want.error.code}`;
    const ok = typeof want.error.message === 'string' ? got.error.message === want.error.message : want.error.message.test(got.error.message);
    return ok ? undefined : `message ${JSON.stringify(got.error.message)}, wanted ${String(want.error.message)}`;
  }
  if ('error' in got) return `error ${got.error.code} ${got.error.message}`;
  const a = JSON.stringify(canon(got.reply, want.unordered));
  const b = JSON.stringify(canon(want.reply, want.unordered));
  return a === b ? undefined : `reply differs:\n got  ${a.slice(0, 1500)}\n want ${b.slice(0, 1500)}`;
}

let result: ReplayResult;
let dir: string;

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lainlet-grpc-golden-'));
  const out = join(dir, 'result.json');
  const addresses = Object.keys(golden.setup.source_addresses).filter((a) => a !== '127.0.0.1');
  // As the recording (GRPC.md §11.1): a private network and UTS namespace, the container
  // addresses on lo. Nothing in it is visible outside; it ends with the replay.
  const script = ['ip link set lo up', ...addresses.map((a) => `ip addr add ${a}/32 dev lo`), `hostname ${golden.setup.hostname}`,
    `exec node --import=tsx test/grpc/replay.ts '${out}'`].join(' && ');
  const child = spawn('unshare', ['--net', '--uts', '--', 'sh', '-c', script], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  if (code !== 0) throw new Error(`the replay (unshare --net; needs CAP_SYS_ADMIN) exited ${code}:\n${output.slice(-4000)}`);
  result = JSON.parse(readFileSync(out, 'utf8')) as ReplayResult;
});

test.after.always(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function checkCalls(t: import('ava').ExecutionContext, label: string, calls: GoldenCall[], got: UnaryResult[]) {
  t.is(got.length, calls.length);
  const failures: string[] = [];
  calls.forEach((c, i) => {
    const why = mismatch(got[i], expectedOf(label, c));
    if (why) failures.push(`${label} #${i} ${c.rpc} ${JSON.stringify(c.request)} from ${c.from}: ${why}`);
  });
  t.deepEqual(failures, []);
}

test('every call, from every source address, answers as the original (entry\'s two calls included)', (t) => {
  checkCalls(t, 'calls', golden.calls, result.calls);
  // entry's calls (GRPC.md §8): what it reads must be there, from the node and from a container.
  const entry = golden.calls.map((c, i) => [c, result.calls[i]] as const)
    .filter(([c]) => c.reply !== undefined)
    .filter(([c]) => (c.rpc === '/message.Config/Get' && c.request.Target === 'auth/console') || (c.rpc === '/message.Coreinfo/Get' && c.request.Appname === 'hello'));
  t.true(entry.some(([c]) => c.from !== '127.0.0.1'), 'entry\'s calls also from a container address');
  for (const [, got] of entry) t.true('reply' in got && Object.keys(got.reply.Data ?? {}).length > 0);
});

test('the recorded reply bytes, where the wire is deterministic: packed int32, empty message, map entries', (t) => {
  let compared = 0;
  golden.wire.forEach((w, i) => {
    // Version carries the agent's own version; Nodes entries come in random order (GRPC.md §11.3 step 3).
    if (w.rpc === '/message.Lainlet/Version' || w.rpc === '/message.Nodes/Get') return;
    t.is(result.wire[i], w.reply_hex, `${w.rpc} ${JSON.stringify(w.request)}`);
    compared++;
  });
  t.is(compared, 4);
});

test('every watch sends the recorded replies, in order, across the six mutations', (t) => {
  const streams = golden.watches.streams;
  t.is(result.watches.length, streams.length);
  streams.forEach((s, i) => {
    const got = result.watches[i];
    const what = `${s.rpc} ${JSON.stringify(s.request)} from ${s.from}`;
    const unordered = s.rpc === '/message.Podgroup/Watch' ? ['Data'] : [];
    t.deepEqual(got.replies.map((r) => canon(r, unordered)), s.replies.map((r) => canon(r.reply, unordered)), what);
    const end = s.end as string | { status: { message: string } };
    if (typeof end === 'string') {
      t.is(got.end?.code, status.CANCELLED, `${what}: open until cancelled`);
    } else {
      t.deepEqual(got.end, { code: codeFor(end.status.message), message: end.status.message }, `${what}: ends with the status, no reply`);
    }
  });
});

test('the state after the mutations answers as the original (the moved address forgotten)', (t) => {
  checkCalls(t, 'after', golden.after, result.after);
});

test('calls that crashed the original answer with the HTTP content in the gRPC shape', (t) => {
  const httpBody = (path: string) => JSON.parse(http.plain.find((p) => p.path === path && p.from === '127.0.0.1')!.body) as Record<string, unknown>;
  const wrap = (body: Record<string, unknown>) => ({ Data: Object.fromEntries(Object.entries(body).map(([app, procs]) => [app, { procs }])) });
  const all = wrap(httpBody('/v2/streamrouter/streamprocs'));
  const tcpEcho = wrap(httpBody('/v2/streamrouter/streamprocs?appname=tcp-echo'));
  t.true(Object.keys(all.Data).includes('tcp-echo'));
  const wanted = [all, tcpEcho, all, tcpEcho]; // Get {}, Get tcp-echo, Watch {}, Get {} from a tcp-echo container
  const [getAll, getOne, watchAll, fromContainer] = result.crashes;
  for (const [i, got] of [getAll, getOne, fromContainer].entries()) {
    t.true('reply' in got, `crash call ${i}`);
    if ('reply' in got) t.deepEqual(canon(got.reply), canon(wanted[i === 2 ? 3 : i]));
  }
  t.true('replies' in watchAll);
  if ('replies' in watchAll) t.deepEqual(watchAll.replies.map((r) => canon(r)), [canon(all)]);
});
