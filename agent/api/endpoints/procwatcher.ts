// /v2/procwatcher?appname=<app> — per pod group, each instance's IP, port and proc name (API.md §4).
// Ordered by etcd key (API.md §11 item 6); a pod without containers reports no IP (item 4).
import { encodeString } from '../../../shared/gojson.js';
import type { PodGroupEntry } from '../../indexes/index.js';
import type { Endpoint } from '../types.js';
import { NO_PERMISSION, badRequest, defineEndpoint, fixPrefix, joinFragments, keyScope, memoize, ok, type EndpointContext } from './common.js';

const elementOf = memoize(({ pg }: PodGroupEntry): string => {
  const pods = pg.pods.map((pod) => {
    const first = pod.containers[0];
    return `{"InstanceNo":${pod.instanceNo},"IP":${encodeString(first?.containerIp ?? '')},"Port":${first?.containerPort ?? 0},`
      + `"ProcName":${encodeString(first?.procName ?? '')}}`;
  });
  return `{"proc":${joinFragments('[', pods)}}`;
});

export function procWatcher({ indexes, auth }: EndpointContext): Endpoint {
  return defineEndpoint({
    path: '/v2/procwatcher',
    index: 'podgroups',
    resolve(req) {
      const app = req.query('appname');
      if (app === '') return badRequest('appname required');
      if (!auth.pass(req.remoteIp, app)) return badRequest(NO_PERMISSION);
      // No "*" shortcut here: lainlet looks up "*/" for appname=*, which matches nothing.
      return keyScope(fixPrefix(app));
    },
    render(scope) {
      return ok(joinFragments('[', indexes.podGroups.lookup(scope).map(elementOf)));
    },
  });
}
