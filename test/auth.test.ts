// Who may read what (agent/auth.ts, API.md §5): local callers, container and portal IPs, super
// apps, -noauth, and the secret config targets. Pure unit tests over hand-made tables, so that
// each rule is seen on its own.
import test from 'ava';
import { Auth, isSecretConfigTarget, normalizeIp, SECRET_CONFIG_PREFIXES } from '../agent/auth.js';
import type { AuthTables } from '../agent/indexes/auth-tables.js';

const NODE_IP = '10.0.0.5';

/**
 * A hello-world cluster: `hello` (web container 172.20.0.11), the super app `console`
 * (172.20.0.12), a portal container 172.20.0.13 fronting the services `redis` and `mysql`
 * (redis first), and 172.20.0.14, a container of app `other` that is also a portal for `pg`.
 */
const CONTAINERS = new Map([['172.20.0.11', 'hello'], ['172.20.0.12', 'console'], ['172.20.0.14', 'other']]);
const PORTALS = new Map([['172.20.0.13', ['redis', 'mysql']], ['172.20.0.14', ['pg']]]);

function tablesWith(superApps: string[]): AuthTables {
  const supers = new Set(superApps);
  return {
    appOfContainerIp: (ip) => CONTAINERS.get(ip),
    servicesOfPortalIp: (ip) => PORTALS.get(ip) ?? [],
    firstServiceOfPortalIp: (ip) => PORTALS.get(ip)?.[0],
    portalFronts: (ip, service) => PORTALS.get(ip)?.includes(service) ?? false,
    isSuperApp: (app) => supers.has(app),
  };
}

function auth(over: { nodeIp?: string; noauth?: boolean; superApps?: string[] } = {}): Auth {
  return new Auth({ tables: tablesWith(over.superApps ?? ['console']), nodeIp: over.nodeIp ?? NODE_IP, noauth: over.noauth ?? false });
}

// ---- secret config targets ------------------------------------------------------------------

test('every listed config prefix is secret, as a plain string prefix of the target', (t) => {
  t.is(SECRET_CONFIG_PREFIXES.length, 18);
  for (const prefix of SECRET_CONFIG_PREFIXES) {
    t.true(isSecretConfigTarget(prefix), prefix);
    t.true(isSecretConfigTarget(`${prefix}x/y`), `${prefix}x/y`);
  }
  for (const target of ['*', 'vipx', 'sslcert/a', 'dns_ip_backup', 'vips/1', 'super_apps/console']) t.true(isSecretConfigTarget(target), target);
});

test('other config targets are not secret, nor are targets that only contain or end with a secret name', (t) => {
  for (const target of ['domain', 'features/x', '', 'xvip', 'my_ssl', 'node', 'a*', 'dns', 'calico']) t.false(isSecretConfigTarget(target), target);
});

test('the secret prefix list cannot be changed at run time', (t) => {
  t.throws(() => { (SECRET_CONFIG_PREFIXES as string[]).push('domain'); });
  t.false(isSecretConfigTarget('domain'));
});

// ---- addresses --------------------------------------------------------------------------------

test('an IPv4 peer reported in IPv6-mapped form is the IPv4 address; anything else stays as it is', (t) => {
  t.is(normalizeIp('::ffff:172.20.0.11'), '172.20.0.11');
  t.is(normalizeIp('172.20.0.11'), '172.20.0.11');
  t.is(normalizeIp('::ffff:ac14:b'), '::ffff:ac14:b', 'IPv6 written in hex is not an IPv4 peer');
  t.is(normalizeIp('::1'), '::1');
  t.is(normalizeIp('fe80::ffff:1.2.3.4'), 'fe80::ffff:1.2.3.4', 'only the ::ffff: prefix is the mapped form');
  t.is(normalizeIp(''), '');
});

test('loopback (v4, v6, bracketed v6) and the node IP are local; nothing else is', (t) => {
  const a = auth();
  for (const ip of ['127.0.0.1', '::1', '[::1]', NODE_IP]) t.true(a.isLocal(ip), ip);
  for (const ip of ['127.0.0.2', '10.0.0.50', '10.0.0.', '172.20.0.12', '', '::2']) t.false(a.isLocal(ip), ip);
});

test('the checks take the address as the request carries it, normalised once where it comes in (ApiRequest.remoteIp); they do not normalise it again', (t) => {
  // The mapped forms reach them already normalised: edge-cases.test.ts (requestFromUrl),
  // http.test.ts (a dual-stack listener), grpc-units.test.ts (peerIp).
  const a = auth();
  t.false(a.isLocal('::ffff:127.0.0.1'));
  t.is(a.appName('::ffff:172.20.0.11'), undefined);
});

test('without -ip no address but loopback is local, not even an empty peer address', (t) => {
  const a = auth({ nodeIp: '' });
  t.false(a.isLocal(''));
  t.false(a.isLocal(NODE_IP));
  t.true(a.isLocal('127.0.0.1'));
});

// ---- app name -------------------------------------------------------------------------------

test('a caller\'s app is its container\'s app first, else the first service its portal fronts, else unknown', (t) => {
  const a = auth();
  t.is(a.appName('172.20.0.11'), 'hello');
  t.is(a.appName('172.20.0.13'), 'redis', 'portal: the first service');
  t.is(a.appName('172.20.0.14'), 'other', 'a container IP wins over a portal IP');
  t.is(a.appName('172.20.0.99'), undefined);
  t.is(a.appName('127.0.0.1'), undefined, 'local callers have no app');
  t.is(auth({ noauth: true }).appName('172.20.0.99'), undefined, '-noauth still looks the caller up');
  t.is(auth({ noauth: true }).appName('172.20.0.11'), 'hello');
});

// ---- super ----------------------------------------------------------------------------------

test('isSuperApp is the super-app table, or true for every app under -noauth', (t) => {
  t.true(auth().isSuperApp('console'));
  t.false(auth().isSuperApp('hello'));
  t.true(auth({ noauth: true }).isSuperApp('hello'));
  t.true(auth({ noauth: true }).noauth);
  t.false(auth().noauth);
});

test('super callers: local ones and containers of a super app; never a portal IP, nor an unknown or ordinary one', (t) => {
  const a = auth();
  t.true(a.isSuper('127.0.0.1'));
  t.true(a.isSuper(NODE_IP));
  t.true(a.isSuper('172.20.0.12'));
  t.false(a.isSuper('172.20.0.11'));
  t.false(a.isSuper('172.20.0.13'));
  t.false(auth({ superApps: ['console', 'redis'] }).isSuper('172.20.0.13'), 'a portal IP is never super, even when its service is a super app');
  t.false(a.isSuper('172.20.0.99'));
  t.true(auth({ noauth: true }).isSuper('172.20.0.99'), '-noauth: everyone');
});

// ---- pass -----------------------------------------------------------------------------------

test('pass: local callers read everything', (t) => {
  const a = auth();
  for (const ip of ['127.0.0.1', '::1', NODE_IP]) {
    t.true(a.pass(ip, 'hello'), ip);
    t.true(a.pass(ip, '*'), ip);
  }
});

test('pass: a container reads its own app only; a super app\'s container reads every app', (t) => {
  const a = auth();
  t.true(a.pass('172.20.0.11', 'hello'));
  t.false(a.pass('172.20.0.11', 'console'));
  t.false(a.pass('172.20.0.11', '*'));
  t.false(a.pass('172.20.0.11', 'redis'), 'a client app may not read its dependency\'s data');
  t.true(a.pass('172.20.0.12', 'hello'));
  t.true(a.pass('172.20.0.12', '*'));
});

test('pass: a portal container reads every service it fronts, not others', (t) => {
  const a = auth();
  t.true(a.pass('172.20.0.13', 'redis'));
  t.true(a.pass('172.20.0.13', 'mysql'), 'its second service too');
  t.false(a.pass('172.20.0.13', 'hello'));
  t.false(a.pass('172.20.0.13', '*'));
  t.true(a.pass('172.20.0.14', 'pg'), 'a container that is also a portal reads the service');
  t.true(a.pass('172.20.0.14', 'other'));
  t.false(a.pass('172.20.0.14', 'hello'));
  t.true(auth({ superApps: ['console', 'redis'] }).pass('172.20.0.13', 'hello'), 'a portal whose (first) service is a super app reads every app');
});

test('pass: an unknown caller reads nothing, unless -noauth', (t) => {
  t.false(auth().pass('172.20.0.99', 'hello'));
  t.false(auth().pass('172.20.0.99', '*'));
  t.true(auth({ noauth: true }).pass('172.20.0.99', 'hello'));
  t.true(auth({ noauth: true }).pass('172.20.0.11', 'console'));
});
