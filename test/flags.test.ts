// The original lainlet's command line must work verbatim: Go's flag syntax.
import test from 'ava';
import { checkIp, FlagError, MAX_TIMER_MS, parseEndpoints, parseFlags, parseHubAddresses, parseListenAddress, usage, type FlagSpec } from '../shared/flags.js';

const specs: FlagSpec[] = [
  { name: 'web', kind: 'string', default: ':9001', help: '' },
  { name: 'ip', kind: 'string', default: '', help: '' },
  { name: 'noauth', kind: 'bool', default: false, help: '' },
  { name: 'debug', kind: 'bool', default: false, help: '' },
  { name: 'grpc.addr', kind: 'string', default: '', help: '' },
  { name: 'history-count', kind: 'int', default: 10, help: '' },
];

test('the original systemd unit\'s command line parses as Go would', (t) => {
  const { values } = parseFlags(['-web=:9001', '-grpc.addr=:9000', '-ip=192.168.77.21', '-debug'], specs);
  t.like(values, { web: ':9001', 'grpc.addr': ':9000', ip: '192.168.77.21', debug: true, noauth: false });
});

test('one dash or two, "=value" or a separate argument', (t) => {
  t.like(parseFlags(['--web', '127.0.0.1:1', '-ip', '10.0.0.5', '--noauth'], specs).values, { web: '127.0.0.1:1', ip: '10.0.0.5', noauth: true });
  t.like(parseFlags(['-noauth=false', '--history-count=+5'], specs).values, { noauth: false, 'history-count': 5 });
});

test('parsing stops at the first non-flag argument or at --', (t) => {
  t.deepEqual(parseFlags(['-debug', 'extra', '-noauth'], specs).rest, ['extra', '-noauth']);
  t.deepEqual(parseFlags(['--', '-debug'], specs).rest, ['-debug']);
});

test('unknown flags, missing values and bad numbers are errors', (t) => {
  t.throws(() => parseFlags(['-nosuch'], specs), { instanceOf: FlagError, message: /not defined: -nosuch/ });
  t.throws(() => parseFlags(['-web'], specs), { instanceOf: FlagError, message: /needs an argument/ });
  t.throws(() => parseFlags(['-history-count=1.5'], specs), { instanceOf: FlagError });
  t.throws(() => parseFlags(['-noauth=maybe'], specs), { instanceOf: FlagError });
});

test('etcd endpoints with or without http://', (t) => {
  t.deepEqual(parseEndpoints('10.0.0.1:4001, http://10.0.0.2:4001,https://e:2379'), ['http://10.0.0.1:4001', 'http://10.0.0.2:4001', 'https://e:2379']);
  t.deepEqual(parseEndpoints('HTTP://[::1]:2379/,etcd-1.lain:4001'), ['http://[::1]:2379', 'http://etcd-1.lain:4001']);
  t.deepEqual(parseEndpoints(''), []);
});

test('etcd endpoints the client would retry forever are refused: another scheme, no port or a bad one, a path', (t) => {
  const refused = (list: string, message: RegExp) => t.throws(() => parseEndpoints(list, '--etcd'), { instanceOf: FlagError, message }, list);
  refused('ftp://127.0.0.1:2379', /^invalid --etcd endpoint "ftp:\/\/127\.0\.0\.1:2379": the scheme must be http or https$/);
  refused('http://127.0.0.1:notaport', /^invalid --etcd endpoint "http:\/\/127\.0\.0\.1:notaport": want host:port/);
  refused('10.0.0.1', /want host:port/);
  refused('10.0.0.1:4001,10.0.0.2', /"10\.0\.0\.2"/);
  refused('127.0.0.1:0', /port 0 is not 1-65535/);
  refused('127.0.0.1:65536', /port 65536 is not 1-65535/);
  refused('http://127.0.0.1:2379/v2/keys', /want host:port/);
  refused('http://user@127.0.0.1:2379', /want host:port/);
  refused('[nothex]:2379', /want host:port/);
  refused('[1:2:3:4:5:6:7:8:9]:2379', /is not an IPv6 address/);
});

test('hub addresses: ws:// or wss://, with host and port', (t) => {
  t.deepEqual(parseHubAddresses('ws://h1:9101, wss://[::1]:9101/lainlet'), ['ws://h1:9101', 'wss://[::1]:9101/lainlet']);
  t.throws(() => parseHubAddresses('http://h1:9101'), { instanceOf: FlagError, message: /^invalid -hub address "http:\/\/h1:9101": it must start with ws:\/\/ or wss:\/\/$/ });
  t.throws(() => parseHubAddresses('ws://127.0.0.1:notaport'), { instanceOf: FlagError, message: /"ws:\/\/127\.0\.0\.1:notaport": want ws:\/\/host:port/ });
  t.throws(() => parseHubAddresses('ws://h1'), { instanceOf: FlagError, message: /want ws:\/\/host:port/ });
  t.throws(() => parseHubAddresses('wss://h1:0'), { instanceOf: FlagError, message: /port 0/ });
});

test('-ip: empty or an IP address', (t) => {
  t.is(checkIp(''), '');
  t.is(checkIp('10.0.0.5'), '10.0.0.5');
  t.is(checkIp('fe80::1'), 'fe80::1');
  t.throws(() => checkIp('notanip'), { instanceOf: FlagError, message: 'invalid value "notanip" for flag -ip: not an IP address' });
  t.throws(() => checkIp('10.0.0.256'), { instanceOf: FlagError });
});

const ranged: FlagSpec[] = [
  { name: 'timeout', kind: 'int', default: 15_000, min: 1000, max: MAX_TIMER_MS, why: 'a reason', help: 'ms' },
  { name: 'count', kind: 'int', default: 1, min: 0, help: 'n' },
  { name: 'debug', kind: 'bool', default: false, help: '' },
];

test('int flags outside their range are refused, with the reason', (t) => {
  t.like(parseFlags(['-timeout', '1000', '-count=0'], ranged).values, { timeout: 1000, count: 0 });
  t.like(parseFlags([`-timeout=${MAX_TIMER_MS}`], ranged).values, { timeout: MAX_TIMER_MS });
  t.throws(() => parseFlags(['-timeout', '0'], ranged), { instanceOf: FlagError, message: 'invalid value "0" for flag -timeout: must be at least 1000 (a reason)' });
  t.throws(() => parseFlags(['--timeout', String(MAX_TIMER_MS + 1)], ranged, { dash: '--' }), { instanceOf: FlagError, message: `invalid value "${MAX_TIMER_MS + 1}" for flag --timeout: must be at most ${MAX_TIMER_MS} (a reason)` });
  t.throws(() => parseFlags(['-count=-1'], ranged), { instanceOf: FlagError, message: 'invalid value "-1" for flag -count: must be at least 0' });
  t.throws(() => parseFlags(['-count=99999999999999999999'], ranged), { instanceOf: FlagError, message: /value out of range/ });
  t.regex(usage('p', ranged), /-timeout int\n\s+ms \(default 15000, at least 1000\)/);
  t.regex(usage('p', ranged, '--'), /^ {2}--count int$/m);
});

test('with { args: false } what Go would leave in flag.Args() is refused', (t) => {
  t.throws(() => parseFlags(['-debug', 'extra'], ranged, { args: false }), { instanceOf: FlagError, message: 'unexpected argument "extra": this program takes flags only' });
  // Go reads "-debug false -count 5" as -debug, then stops: -count would be ignored.
  t.throws(() => parseFlags(['-debug', 'false', '-count', '5'], ranged, { args: false }), { instanceOf: FlagError, message: 'unexpected argument "false": a boolean flag takes its value after "=", as in -debug=false' });
  t.throws(() => parseFlags(['--', '-debug'], ranged, { args: false }), { instanceOf: FlagError, message: /unexpected argument "-debug"/ });
  t.deepEqual(parseFlags(['-debug', '--'], ranged, { args: false }).rest, []);
});

test('the flags given are told from the defaults', (t) => {
  t.deepEqual([...parseFlags(['-count=1', '-debug'], ranged).set].sort(), ['count', 'debug']);
  t.deepEqual([...parseFlags([], ranged).set], []);
});

test('listen addresses: ":9001" is every interface', (t) => {
  t.deepEqual(parseListenAddress(':9001'), { host: '', port: 9001 });
  t.deepEqual(parseListenAddress('127.0.0.1:9101'), { host: '127.0.0.1', port: 9101 });
  t.deepEqual(parseListenAddress('[::1]:9101'), { host: '::1', port: 9101 });
  t.throws(() => parseListenAddress('9001'), { instanceOf: FlagError });
});
