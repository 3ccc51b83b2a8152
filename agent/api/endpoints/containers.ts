// /v2/containers?nodename=<node name or IP> — containers by `<node>/<id>` (API.md §4). Super only.
// Every container is listed under its node name and under its node IP.
import { encodeString } from '../../../shared/gojson.js';
import type { ContainerEntry } from '../../indexes/index.js';
import type { Endpoint } from '../types.js';
import { SUPER_REQUIRED, badRequest, defineEndpoint, fixPrefix, joinFragments, keyScope, memoize, ok, type EndpointContext } from './common.js';

const memberOf = memoize(({ key, info }: ContainerEntry): string =>
  `${encodeString(key)}:{"app":${encodeString(info.app)},"app_version":${encodeString(info.appVersion)},`
  + `"proc":${encodeString(info.proc)},"nodename":${encodeString(info.nodeName)},"nodeip":${encodeString(info.nodeIp)},`
  + `"ip":${encodeString(info.ip)},"port":${info.port},"instanceNo":${info.instanceNo}}`);

export function containersWatcher({ indexes, auth }: EndpointContext): Endpoint {
  return defineEndpoint({
    path: '/v2/containers',
    index: 'containers',
    resolve(req) {
      if (!auth.isSuper(req.remoteIp)) return badRequest(SUPER_REQUIRED);
      const node = req.query('nodename') || '*';
      return keyScope(node === '*' ? node : fixPrefix(node));
    },
    render: (scope) => ok(joinFragments('{', indexes.containers.lookup(scope).map(memberOf))),
  });
}
