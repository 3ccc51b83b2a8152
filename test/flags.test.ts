// The original lainlet's command line must work verbatim: Go's flag syntax.
import test from 'ava';
import { FlagError, parseEndpoints, parseFlags, parseListenAddress, type FlagSpec } from '../shared/flags.js';

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
});

test('listen addresses: ":9001" is every interface', (t) => {
  t.deepEqual(parseListenAddress(':9001'), { host: '', port: 9001 });
  t.deepEqual(parseListenAddress('127.0.0.1:9101'), { host: '127.0.0.1', port: 9101 });
  t.deepEqual(parseListenAddress('[::1]:9101'), { host: '::1', port: 9101 });
  t.throws(() => parseListenAddress('9001'), { instanceOf: FlagError });
});
