// Every endpoint of the API the agent serves (API.md §4), one module each.
import { Auth } from '../../auth.js';
import type { Indexes } from '../../indexes/index.js';
import type { Endpoint } from '../types.js';
import { appName } from './appname.js';
import { appsWatcher } from './appswatcher.js';
import { backupSpec } from './backupspec.js';
import type { EndpointContext } from './common.js';
import { configWatcher } from './configwatcher.js';
import { containersWatcher } from './containers.js';
import { coreInfoWatcher } from './coreinfowatcher.js';
import { dependsWatcher } from './depends.js';
import { localProcs } from './localprocs.js';
import { localSpecQuery, localSpecWatcher } from './localspec.js';
import { nodesWatcher } from './nodes.js';
import { procWatcher } from './procwatcher.js';
import { proxyWatcher } from './proxywatcher.js';
import { streamPorts } from './streamports.js';
import { streamProcs } from './streamprocs.js';
import { webProcs } from './webprocs.js';

export interface EndpointOptions {
  indexes: Indexes;
  /** The -ip flag: callers from it are local; localspecquery's default node. "" when unset. */
  nodeIp: string;
  /** This node's hostname: which containers rebellion/localprocs calls local. */
  hostname: string;
  /** -noauth: skip every authorization check. */
  noauth: boolean;
}

export function createEndpoints(opts: EndpointOptions): Endpoint[] {
  const auth = new Auth({ tables: opts.indexes, nodeIp: opts.nodeIp, noauth: opts.noauth });
  const context: EndpointContext = { indexes: opts.indexes, auth, nodeIp: opts.nodeIp, hostname: opts.hostname };
  return [
    configWatcher(context),
    procWatcher(context),
    coreInfoWatcher(context),
    proxyWatcher(context),
    webProcs(context),
    streamProcs(context),
    streamPorts(context),
    localProcs(context),
    backupSpec(context),
    appsWatcher(context),
    dependsWatcher(context),
    nodesWatcher(context),
    containersWatcher(context),
    localSpecQuery(context),
    localSpecWatcher(context),
    appName(context),
  ];
}

export { requestFromUrl } from './request.js';
