// /v2/streamrouter/ports?appname=<app> — every listen port of every stream proc, ascending,
// duplicates kept (API.md §4). networkd opens these on the node.
import type { Endpoint } from '../types.js';
import { appScope, defineEndpoint, ok, type EndpointContext } from './common.js';

export function streamPorts({ indexes, auth }: EndpointContext): Endpoint {
  return defineEndpoint({
    path: '/v2/streamrouter/ports',
    index: 'podgroups',
    resolve: (req) => appScope(req, auth),
    render(scope) {
      const ports: number[] = [];
      for (const { pg } of indexes.podGroups.streamProcs(scope)) for (const p of pg.streamPorts) ports.push(p.listen);
      ports.sort((a, b) => a - b);
      return ok('[' + ports.join(',') + ']');
    },
  });
}
