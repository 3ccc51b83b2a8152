// Who may read what (API.md §5). The caller is identified by its TCP peer address only:
// containers reach their node's agent from their calico IP, host processes from the node IP.
import type { AuthTables } from './indexes/auth-tables.js';

/**
 * Config targets that need a super caller: a target is secret when it starts with any of these
 * (plain string prefix, so `vipx`, `sslcert/…` and `dns_ip_backup` are secret too, and so is `*`).
 */
export const SECRET_CONFIG_PREFIXES: readonly string[] = Object.freeze([
  '*', 'swarm_manager_ip', 'super_apps', 'dnsmasq_servers', 'calico_default_rule', 'calico_network',
  'dnsmasq_addresses', 'ssl', 'vips', 'tinydns_fqdns', 'bootstrap_node_ip', 'dns_port', 'vip',
  'etcd_cluster_token', 'system_volumes', 'rsyncd_secrets', 'dns_ip', 'node_network',
]);

/** The secret prefixes by their first character: a target is checked against the few that can match. */
const SECRET_BY_FIRST_CHAR = (() => {
  const table = new Map<number, string[]>();
  for (const prefix of SECRET_CONFIG_PREFIXES) {
    const c = prefix.charCodeAt(0);
    table.set(c, [...(table.get(c) ?? []), prefix]);
  }
  return table;
})();

export function isSecretConfigTarget(target: string): boolean {
  const candidates = SECRET_BY_FIRST_CHAR.get(target.charCodeAt(0));
  if (candidates === undefined) return false;
  for (let i = 0; i < candidates.length; i++) if (target.startsWith(candidates[i])) return true;
  return false;
}

export interface AuthOptions {
  tables: AuthTables;
  /** The node's own IP (the -ip flag): callers from it are local. "" when unset. */
  nodeIp: string;
  /** -noauth: every check passes (AppName still looks the caller up). */
  noauth: boolean;
}

/** "::ffff:1.2.3.4" → "1.2.3.4": a dual-stack socket reports IPv4 peers that way. */
export function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && ip.indexOf('.') > 0 ? ip.slice(7) : ip;
}

/**
 * The checks take the caller's address normalised (normalizeIp), as every request carries it
 * (ApiRequest.remoteIp): it is normalised once where the request comes in, not in each check.
 */
export class Auth {
  private readonly tables: AuthTables;
  private readonly nodeIp: string;
  readonly noauth: boolean;

  constructor(options: AuthOptions) {
    this.tables = options.tables;
    this.nodeIp = options.nodeIp;
    this.noauth = options.noauth;
  }

  /** Loopback or the node's own IP: everything is allowed. */
  isLocal(ip: string): boolean {
    return ip === '127.0.0.1' || ip === '::1' || ip === '[::1]' || (this.nodeIp !== '' && ip === this.nodeIp);
  }

  /** The app a caller belongs to: its container first, else the first service its portal fronts. */
  appName(ip: string): string | undefined {
    return this.tables.appOfContainerIp(ip) ?? this.tables.firstServiceOfPortalIp(ip);
  }

  isSuperApp(app: string): boolean {
    return this.noauth || this.tables.isSuperApp(app);
  }

  /** Local, or a container of a super app (portal IPs are never super). */
  isSuper(ip: string): boolean {
    if (this.noauth || this.isLocal(ip)) return true;
    const app = this.tables.appOfContainerIp(ip);
    return app !== undefined && this.tables.isSuperApp(app);
  }

  /**
   * May `ip` read `app`'s data: local; or a known caller whose app is `app` or a super app; or
   * a portal container fronting service `app`. A client app may not read its dependency's data.
   */
  pass(ip: string, app: string): boolean {
    if (this.noauth || this.isLocal(ip)) return true;
    const own = this.appName(ip);
    if (own === undefined) return false;
    if (own === app || this.tables.isSuperApp(own)) return true;
    return this.tables.portalFronts(ip, app);
  }
}
