// Nonsense configuration is refused at start (issue: configuration and runtime), each refusal
// as an operator needs it: one line on stderr saying what is wrong, then the usage, exit code 2,
// no stack trace — instead of starting and retrying forever, looping, or ignoring the flag.
import test, { type ExecutionContext } from 'ava';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VERSION } from '../shared/version.js';
import { logLines, run, type Run } from './helpers/cli.js';

const HUB = 'ws://127.0.0.1:1'; // nothing listens there: an agent given it starts and retries
const WEB = ['-web', '127.0.0.1:0'];
const MEMORY = ['--store', 'memory', '--listen', '127.0.0.1:0'];
/** Some readable file, for flags refused before the file is read. */
const A_FILE = fileURLToPath(new URL('../package.json', import.meta.url));
let dir: string;

test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'lainlet-config-'));
  for (const [name, mode] of [['token-0644', 0o644], ['token-0666', 0o666], ['token-0640', 0o640]] as const) {
    writeFileSync(join(dir, name), 'correct-horse-battery-staple-42\n');
    chmodSync(join(dir, name), mode);
  }
  writeFileSync(join(dir, 'short'), 'short\n');
  writeFileSync(join(dir, 'seed.json'), '{"kvs": {}}');
});

test.after.always(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

function refused(t: ExecutionContext, r: Run, program: string, reason: RegExp): void {
  const all = `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
  t.false(r.started, `${program} started instead of refusing\n${all}`);
  t.is(r.code, 2, all);
  const [first, second] = r.stderr.split('\n');
  t.regex(first, new RegExp(`^${program}: `), all);
  t.regex(first, reason, all);
  t.is(second, `Usage of ${program}:`, all);
  t.notRegex(r.stderr, /^\s+at /m, `no stack trace\n${all}`);
  t.is(r.stdout, '', all);
}

const agentCases: Array<[string, string[], RegExp]> = [
  ['an etcd endpoint of another scheme', ['-etcd', 'ftp://127.0.0.1:2379'], /-etcd endpoint "ftp:\/\/127\.0\.0\.1:2379": the scheme must be http or https/],
  ['an etcd endpoint whose port is not a number', ['-etcd', 'http://127.0.0.1:notaport'], /-etcd endpoint "http:\/\/127\.0\.0\.1:notaport"/],
  ['an etcd endpoint without a port', ['-etcd', '10.0.0.1'], /-etcd endpoint "10\.0\.0\.1": want host:port/],
  ['an etcd endpoint with port 0', ['-etcd', '127.0.0.1:0'], /port 0 is not 1-65535/],
  ['a hub address whose port is not a number', ['-hub', 'ws://127.0.0.1:notaport'], /-hub address "ws:\/\/127\.0\.0\.1:notaport"/],
  ['a hub address that is not ws:// or wss://', ['-hub', 'http://127.0.0.1:9101'], /must start with ws:\/\/ or wss:\/\//],
  ['an -ip that is not an IP', ['-hub', HUB, '-ip', 'notanip'], /invalid value "notanip" for flag -ip: not an IP address/],
  ['-silence-timeout 0', ['-hub', HUB, '-silence-timeout', '0'], /-silence-timeout: must be at least 1000 \(.*connect\/drop loop\)/],
  ['-silence-timeout beyond what a timer can wait', ['-hub', HUB, '-silence-timeout', '2147483648'], /-silence-timeout: must be at most 2147483647/],
  ['-reconnect-max 0', ['-hub', HUB, '-reconnect-max', '0'], /-reconnect-max: must be at least 200 \(.*tight loop/],
  ['-reconnect-max beyond what a timer can wait', ['-hub', HUB, '-reconnect-max', '3000000000'], /-reconnect-max: must be at most 2147483647/],
  ['a positional argument', ['-hub', HUB, 'extra'], /unexpected argument "extra": this program takes flags only/],
  ['a boolean flag\'s value as the next argument (Go would ignore everything from it on)', ['-hub', HUB, '-noauth', 'false', ...WEB], /unexpected argument "false": a boolean flag takes its value after "=", as in -noauth=false/],
  ['arguments after --', ['-hub', HUB, '--', 'x'], /unexpected argument "x"/],
  ['-store with -hub', ['-hub', HUB, '-store', 'etcd2'], /-store is for standalone mode/],
  ['a -store that is neither etcd nor etcd2', ['-etcd', '127.0.0.1:2379', '-store', 'memory'], /invalid value "memory" for flag -store/],
  ['-ca-file without a wss:// hub', ['-hub', HUB, '-ca-file', A_FILE], /-ca-file is given but no -hub address is wss:\/\//],
  ['-token-file in standalone mode', ['-etcd', '127.0.0.1:2379', '-token-file', A_FILE], /-token-file is for -hub/],
  ['-hub and -etcd together', ['-hub', HUB, '-etcd', '127.0.0.1:2379'], /-hub and -etcd are alternatives/],
  ['neither -hub nor -etcd', [], /give -hub/],
  ['an unreadable token file', ['-hub', HUB, '-token-file', '/nonexistent/token'], /cannot read token file \/nonexistent\/token: ENOENT/],
  ['a bad -web', ['-hub', HUB, '-web', '9001'], /invalid listen address "9001"/],
  ['an unknown flag', ['-nosuch'], /flag provided but not defined: -nosuch/],
];

for (const [what, args, reason] of agentCases) {
  test(`lainlet-agent refuses ${what}`, async (t) => {
    refused(t, await run('agent', [...WEB, ...args]), 'lainlet-agent', reason);
  });
}

const hubCases: Array<[string, string[], RegExp]> = [
  ['an etcd endpoint of another scheme', ['--etcd', 'ftp://127.0.0.1:2379', '--listen', '127.0.0.1:0'], /--etcd endpoint "ftp:\/\/127\.0\.0\.1:2379": the scheme must be http or https/],
  ['an etcd endpoint whose port is not a number', ['--etcd', 'http://127.0.0.1:notaport', '--listen', '127.0.0.1:0'], /--etcd endpoint "http:\/\/127\.0\.0\.1:notaport"/],
  ['--history-count 0', [...MEMORY, '--history-count', '0'], /--history-count: must be at least 1/],
  ['--history-bytes 0', [...MEMORY, '--history-bytes', '0'], /--history-bytes: must be at least 65536/],
  ['a negative --history-prefill', [...MEMORY, '--history-prefill', '-1'], /--history-prefill: must be at least 0/],
  ['--max-backpressure 0', [...MEMORY, '--max-backpressure', '0'], /--max-backpressure: must be at least 65536/],
  ['a negative --max-backpressure', [...MEMORY, '--max-backpressure', '-1'], /--max-backpressure: must be at least 65536/],
  ['--progress-interval 0', [...MEMORY, '--progress-interval', '0'], /--progress-interval: must be at least 100/],
  ['a negative --shutdown-spread', [...MEMORY, '--shutdown-spread', '-1'], /--shutdown-spread: must be at least 0/],
  ['a positional argument', [...MEMORY, 'extra'], /unexpected argument "extra"/],
  ['--seed without --store memory', ['--etcd', '127.0.0.1:2379', '--listen', '127.0.0.1:0', '--seed', 'seed.json'], /--seed is for --store memory/],
  ['--etcd with --store memory', [...MEMORY, '--etcd', '127.0.0.1:2379'], /--etcd is for --store etcd or etcd2/],
  ['no --etcd with --store etcd', ['--listen', '127.0.0.1:0'], /--etcd host:port\[,\.\.\.\] is required with --store etcd/],
  ['an unknown --store', ['--store', 'nosuch', '--listen', '127.0.0.1:0'], /invalid value "nosuch" for flag --store/],
  ['--tls-cert without --tls-key', [...MEMORY, '--tls-cert', A_FILE], /--tls-cert and --tls-key go together/],
  ['a token file that is too short', [...MEMORY, '--token-file', 'SHORT'], /is shorter than 16 characters/],
  // The hub tier's registry (hub/members.ts): a TTL under two refresh periods would drop a live
  // hub from the registry between two of its own writes; a registry inside the ranges agents
  // are sent would reach every node, records and all.
  ['a --members-ttl shorter than two --members-refresh periods', [...MEMORY, '--members-refresh', '2000', '--members-ttl', '3'], /--members-ttl 3 s is shorter than two --members-refresh periods/],
  ['a --members-ttl just under two --members-refresh periods (2 s, 2 x 1001 ms)', [...MEMORY, '--members-ttl', '2', '--members-refresh', '1001'], /--members-ttl 2 s is shorter than two --members-refresh periods/],
  ['a --members-prefix inside the key ranges agents are sent', [...MEMORY, '--members-prefix', '/lain/config/hubs/'], /--members-prefix \/lain\/config\/hubs\/ is inside the key ranges agents are sent/],
  ['a --members-prefix inside the agents\' ranges of another --prefix', [...MEMORY, '--prefix', '/other/', '--members-prefix', '/other/nodes/nodes/hubs'], /--members-prefix \/other\/nodes\/nodes\/hubs is inside the key ranges agents are sent/],
];

for (const [what, args, reason] of hubCases) {
  test(`lainlet-hub refuses ${what}`, async (t) => {
    refused(t, await run('hub', args.map((a) => (a === 'SHORT' ? join(dir, 'short') : a === 'seed.json' ? join(dir, 'seed.json') : a))), 'lainlet-hub', reason);
  });
}

test('both tiers print the version for -v and --version (and -version)', async (t) => {
  for (const program of ['agent', 'hub'] as const) {
    for (const flag of ['-v', '--version', '-version']) {
      const r = await run(program, [flag]);
      t.is(r.code, 0, `${program} ${flag}: ${r.stderr}`);
      t.is(r.stdout, `${VERSION}\n`, `${program} ${flag}`);
    }
  }
});

function tokenWarnings(r: Run): Array<Record<string, unknown>> {
  return logLines(r.stdout).filter((l) => l.level === 40 && /token file/.test(String(l.msg)));
}

test('a token file every user can read is warned about, naming the file and its mode; 0640 is not', async (t) => {
  // The six starts at once (each waits for its program to come up).
  await Promise.all(([['agent', [...WEB, '-hub', HUB, '-token-file']], ['hub', [...MEMORY, '--token-file']]] as const).map(async ([program, args]) => {
    const [open, writable, group] = await Promise.all(['token-0644', 'token-0666', 'token-0640'].map((f) => run(program, [...args, join(dir, f)])));
    t.true(open.started, `${program} starts: the warning does not stop it\n${open.stdout}${open.stderr}`);
    const [warning, ...more] = tokenWarnings(open);
    t.truthy(warning, `${program} warns\n${open.stdout}`);
    t.is(more.length, 0);
    t.like(warning, { file: join(dir, 'token-0644'), mode: '0644' });
    t.regex(String(warning.msg), new RegExp(`token file ${join(dir, 'token-0644')} is readable by every user \\(mode 0644\\)`));
    t.regex(String(tokenWarnings(writable)[0]?.msg), /readable and writable by every user \(mode 0666\)/);
    t.true(group.started, `${program} starts with a 0640 token file\n${group.stdout}${group.stderr}`);
    t.deepEqual(tokenWarnings(group), [], `no warning for 0640 (${program})`);
  }));
});

test('the agent and hub still start with a sane command line (the refusals are not blanket)', async (t) => {
  const agent = await run('agent', [...WEB, '-hub', `${HUB},wss://127.0.0.1:2/path`, '-ip', '::1', '-noauth=false', '-silence-timeout', '1000', '-reconnect-max', '200', '-grpc.addr=:0']);
  t.true(agent.started, agent.stdout + agent.stderr);
  const hub = await run('hub', [...MEMORY, '--seed', join(dir, 'seed.json'), '--history-count', '1', '--history-prefill', '0', '--progress-interval', '100', '--shutdown-spread', '0',
    // Exactly two refresh periods is enough; a registry beside the agents' ranges is fine.
    '--members-refresh', '1000', '--members-ttl', '2', '--members-prefix', '/lain/deployd/hubs/']);
  t.true(hub.started, hub.stdout + hub.stderr);
});

test('npm start: LAINLET_DEMO_PORT that is not a port is one clear line, exit 2', async (t) => {
  const r = await run('demo', [], { env: { LAINLET_DEMO_PORT: 'abc' } });
  t.false(r.started, r.stdout);
  t.is(r.code, 2, r.stderr);
  t.is(r.stderr, 'lainlet-demo: LAINLET_DEMO_PORT must be a port number (0-65535), not "abc"\n');
});

test('npm start: a busy port is one clear line and a non-zero exit, not a stack trace', async (t) => {
  const busy = net.createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  const port = (busy.address() as net.AddressInfo).port;
  try {
    const r = await run('demo', [], { env: { LAINLET_DEMO_PORT: String(port) } });
    t.false(r.started, r.stdout);
    t.is(r.code, 1, r.stderr);
    t.is(r.stderr, `lainlet-demo: cannot listen on 127.0.0.1:${port}: the port is in use (choose another with LAINLET_DEMO_PORT=...)\n`);
  } finally {
    busy.close();
  }
});

test('npm start still starts on a free port', async (t) => {
  const r = await run('demo', [], { env: { LAINLET_DEMO_PORT: '0' } });
  t.true(r.started, r.stdout + r.stderr);
});
