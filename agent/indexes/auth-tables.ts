// The tables authorization reads (API.md §5), kept current with every change:
// container IP → its app, portal IP → the services it fronts, and the super-app names.
import type { DependsValue } from '../model/depends.js';
import type { PodGroup } from '../model/podgroup.js';
import { Claims } from './claims.js';
import type { ContainerOwner } from './entries.js';

export interface AuthTables {
  /** The app owning a container IP (when two pod groups list it, the one last in key order). */
  appOfContainerIp(ip: string): string | undefined;
  /** The services a portal container IP fronts, the one of the first depends key first. */
  servicesOfPortalIp(ip: string): string[];
  /** servicesOfPortalIp(ip)[0], without building the array (asked on every request). */
  firstServiceOfPortalIp(ip: string): string | undefined;
  /** servicesOfPortalIp(ip).includes(service), without building the array. */
  portalFronts(ip: string, service: string): boolean;
  /** Exact name match against the super_apps config keys (API.md §11 item 5). */
  isSuperApp(app: string): boolean;
}

export class AuthTableStore implements AuthTables {
  private readonly containerIps = new Claims<ContainerOwner>();
  private readonly portalIps = new Claims<string>();
  private readonly superApps = new Set<string>();

  get containerIpCount(): number { return this.containerIps.size; }
  get portalIpCount(): number { return this.portalIps.size; }
  get superAppCount(): number { return this.superApps.size; }

  appOfContainerIp(ip: string): string | undefined {
    return this.containerIps.last(ip)?.app;
  }

  servicesOfPortalIp(ip: string): string[] {
    const first = this.portalIps.first(ip);
    if (first === undefined) return [];
    const rest = [...this.portalIps.all(ip)!].filter((s) => s !== first);
    return [first, ...rest];
  }

  firstServiceOfPortalIp(ip: string): string | undefined {
    return this.portalIps.first(ip);
  }

  portalFronts(ip: string, service: string): boolean {
    return this.portalIps.has(ip, service);
  }

  isSuperApp(app: string): boolean {
    return this.superApps.has(app);
  }

  /** Pod group `pgKey` changed from `before` to `after`: its IPs now are exactly those of `after`. */
  updatePodGroup(pgKey: string, before: PodGroup | undefined, after: PodGroup | undefined): void {
    if (before) {
      for (const pod of before.pods) for (const c of pod.containers) this.containerIps.release(c.containerIp, pgKey);
    }
    if (after) {
      for (const pod of after.pods) {
        for (const c of pod.containers) {
          this.containerIps.claim(c.containerIp, pgKey, { app: after.namespace, proc: after.name, containerId: c.id });
        }
      }
    }
  }

  updatePortal(portalKey: string, service: string, before: DependsValue | undefined, after: DependsValue | undefined): void {
    if (before) for (const ip of portalIpsOf(before)) this.portalIps.release(ip, portalKey);
    if (after) for (const ip of portalIpsOf(after)) this.portalIps.claim(ip, portalKey, service);
  }

  addSuperApp(app: string): void { this.superApps.add(app); }
  removeSuperApp(app: string): void { this.superApps.delete(app); }
}

function* portalIpsOf(value: DependsValue): Iterable<string> {
  for (const node of value) for (const [, pod] of node.clients) for (const c of pod.containers) yield c.containerIp;
}
