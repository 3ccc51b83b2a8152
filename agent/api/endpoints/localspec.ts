// /v2/localspecquery?nodeip=<node IP or name> — the distinct "<app>/<proc>" running on a node
// (API.md §4), sorted so an unchanged state always gives the same answer (§11 item 6).
// The original refuses to watch it; /v2/localspecwatcher is the same view, watchable (§11 item 7).
import { compareUtf8, encodeString } from '../../../shared/gojson.js';
import type { Endpoint } from '../types.js';
import { SUPER_REQUIRED, badRequest, defineEndpoint, fixPrefix, joinFragments, keyScope, ok, type EndpointContext } from './common.js';

function localSpec(path: string, watchable: boolean, { indexes, auth, nodeIp }: EndpointContext): Endpoint {
  return defineEndpoint({
    path,
    index: 'containers',
    watchable,
    resolve(req) {
      if (!auth.isSuper(req.remoteIp)) return badRequest(SUPER_REQUIRED);
      // No "*" here: lainlet looks up "*/", which matches nothing; "" (no -ip, no nodeip) is "empty key".
      const key = fixPrefix(req.query('nodeip') || nodeIp);
      return key === '' ? keyScope(key) : { scope: key };
    },
    render(scope) {
      const specs = new Set<string>();
      for (const { info } of indexes.containers.lookup(scope)) specs.add(`${info.app}/${info.proc}`);
      return ok(joinFragments('[', [...specs].sort(compareUtf8).map(encodeString)));
    },
  });
}

export function localSpecQuery(context: EndpointContext): Endpoint {
  return localSpec('/v2/localspecquery', false, context);
}

export function localSpecWatcher(context: EndpointContext): Endpoint {
  return localSpec('/v2/localspecwatcher', true, context);
}
