// /v2/nodes?name=<node> — node values, re-encoded as Go does (API.md §4). Super only.
import { encodeString } from '../../../shared/gojson.js';
import type { NodeEntry } from '../../indexes/index.js';
import type { Endpoint } from '../types.js';
import { SUPER_REQUIRED, badRequest, defineEndpoint, joinFragments, keyScope, memoize, ok, type EndpointContext } from './common.js';

const memberOf = memoize((entry: NodeEntry) => encodeString(entry.key) + ':' + entry.json);

export function nodesWatcher({ indexes, auth }: EndpointContext): Endpoint {
  return defineEndpoint({
    path: '/v2/nodes',
    index: 'nodes',
    resolve(req) {
      if (!auth.isSuper(req.remoteIp)) return badRequest(SUPER_REQUIRED);
      const name = req.query('name') || '*';
      // Keys are `<name>:<ip>:<port>`: "node1" must not match "node10:…".
      return keyScope(name === '*' || name.endsWith(':') ? name : name + ':');
    },
    render: (scope) => ok(joinFragments('{', indexes.nodes.lookup(scope).map(memberOf))),
  });
}
