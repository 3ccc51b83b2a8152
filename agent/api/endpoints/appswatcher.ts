// /v2/appswatcher — every app (pod-group namespace) once (API.md §4). Super only; no parameters.
import { encodeString } from '../../../shared/gojson.js';
import type { Endpoint } from '../types.js';
import { SUPER_REQUIRED, badRequest, defineEndpoint, joinFragments, ok, type EndpointContext } from './common.js';

export function appsWatcher({ indexes, auth }: EndpointContext): Endpoint {
  return defineEndpoint({
    path: '/v2/appswatcher',
    index: 'podgroups',
    resolve(req) {
      if (!auth.isSuper(req.remoteIp)) return badRequest(SUPER_REQUIRED);
      return { scope: '' };
    },
    render() {
      const members = indexes.podGroups.namespaces().map((ns) => {
        const name = encodeString(ns);
        return `${name}:{"Appname":${name}}`;
      });
      return ok(joinFragments('{', members));
    },
  });
}
