// /v2/depends?target=<portal> — portal pods by portal, node and client app (API.md §4). Super only.
import { encodeString } from '../../../shared/gojson.js';
import type { DependsEntry } from '../../indexes/index.js';
import type { Endpoint } from '../types.js';
import { SUPER_REQUIRED, badRequest, defineEndpoint, joinFragments, keyScope, memoize, ok, type EndpointContext } from './common.js';

const memberOf = memoize(({ key, value }: DependsEntry): string => {
  const nodes = value.map(({ node, clients }) => {
    const apps = clients.map(([app, pod]) => {
      const containers = pod.containers.map((c) =>
        `{"ContainerID":${encodeString(c.id)},"NodeIP":${encodeString(c.nodeIp)},"IP":${encodeString(c.containerIp)},"Port":${c.containerPort}}`);
      return `${encodeString(app)}:{"Annotation":${encodeString(pod.annotation)},"Containers":${joinFragments('[', containers)}}`;
    });
    return `${encodeString(node)}:${joinFragments('{', apps)}`;
  });
  return `${encodeString(key)}:${joinFragments('{', nodes)}`;
});

export function dependsWatcher({ indexes, auth }: EndpointContext): Endpoint {
  return defineEndpoint({
    path: '/v2/depends',
    index: 'depends',
    resolve(req) {
      if (!auth.isSuper(req.remoteIp)) return badRequest(SUPER_REQUIRED);
      return keyScope(req.query('target') || '*');
    },
    render: (scope) => ok(joinFragments('{', indexes.depends.lookup(scope).map(memberOf))),
  });
}
