// /appname?ip=<ip> — the app an IP belongs to (API.md §4). Super only. Not under /v2: the HTTP
// layer ignores `watch` for it.
//
// The lookup reads both IP tables (pod groups and depends), so it happens in resolve, which runs
// on every request; the scope is the app name found and render only encodes it, which keeps a
// cached answer valid whatever index changes later.
import { encodeString } from '../../../shared/gojson.js';
import { normalizeIp } from '../../auth.js';
import type { Endpoint } from '../types.js';
import { SUPER_REQUIRED, badRequest, defineEndpoint, ok, serverError, type EndpointContext } from './common.js';

export function appName({ auth }: EndpointContext): Endpoint {
  return defineEndpoint({
    path: '/appname',
    index: 'podgroups',
    watchable: false,
    resolve(req) {
      if (!auth.isSuper(req.remoteIp)) return badRequest(SUPER_REQUIRED);
      const asked = req.query('ip');
      // lainlet strips a ":port" from the address it looks up (the default, the caller, has none here).
      const ip = asked === '' ? req.remoteIp : asked.includes(':') ? asked.slice(0, asked.lastIndexOf(':')) : asked;
      if (ip === '') return serverError('empty key');
      // Asked for in the mapped form ("::ffff:1.2.3.4:80"), it is the IPv4 address, like the caller's own.
      const app = auth.appName(normalizeIp(ip));
      if (app === undefined) return serverError(`unkown address ${ip}`);
      return { scope: app };
    },
    render: (scope) => ok(`{"appname":${encodeString(scope)}}`),
  });
}
