// /v2/proxywatcher?appname=<app> — every container's IP and the spec's exposed port (API.md §4).
import { encodeString } from '../../../shared/gojson.js';
import type { PodGroupEntry } from '../../indexes/index.js';
import type { Endpoint } from '../types.js';
import { appScope, defineEndpoint, joinFragments, memoize, ok, type EndpointContext } from './common.js';
import { objectByName } from './pod-group-maps.js';

const memberOf = memoize(({ pg }: PodGroupEntry): string => {
  const containers: string[] = [];
  for (const pod of pg.pods) {
    pod.containers.forEach((c, j) => {
      containers.push(`{"container_ip":${encodeString(c.containerIp)},"container_port":${pg.containerSpecs[j]?.expose ?? 0}}`);
    });
  }
  return `${encodeString(pg.name)}:{"containers":${joinFragments('[', containers)}}`;
});

export function proxyWatcher({ indexes, auth }: EndpointContext): Endpoint {
  return defineEndpoint({
    path: '/v2/proxywatcher',
    index: 'podgroups',
    resolve: (req) => appScope(req, auth),
    render: (scope) => ok(objectByName(indexes.podGroups.byName(scope), memberOf)),
  });
}
