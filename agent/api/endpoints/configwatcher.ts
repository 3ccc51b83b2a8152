// /v2/configwatcher?target=<key> — raw config values (API.md §4). Secret targets need a super caller.
import { encodeString } from '../../../shared/gojson.js';
import { isSecretConfigTarget } from '../../auth.js';
import type { ConfigEntry } from '../../indexes/index.js';
import type { Endpoint } from '../types.js';
import { SUPER_REQUIRED, badRequest, defineEndpoint, joinFragments, keyScope, memoize, ok, type EndpointContext } from './common.js';

const fragmentOf = memoize((entry: ConfigEntry) => encodeString(entry.key) + ':' + encodeString(entry.raw));

export function configWatcher({ indexes, auth }: EndpointContext): Endpoint {
  return defineEndpoint({
    path: '/v2/configwatcher',
    index: 'config',
    resolve(req) {
      const target = req.query('target') || '*';
      if (isSecretConfigTarget(target) && !auth.isSuper(req.remoteIp)) return badRequest(SUPER_REQUIRED);
      return keyScope(target);
    },
    render(scope) {
      return ok(joinFragments('{', indexes.config.lookup(scope).map(fragmentOf)));
    },
  });
}
