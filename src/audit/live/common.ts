/**
 * Shared pieces of the live probes: findings, which hosts may be probed,
 * and a time bound for every step.
 */
import type { MitigationId } from '../../config/policy.ts';
import { redactAll } from '../../config/redact.ts';
import { isLoopbackHost } from '../../config/url.ts';
import type { AuditFinding, Severity } from '../types.ts';

/** A live finding at an endpoint. */
export function liveFinding(id: MitigationId, severity: Severity, setting: string, message: string, fix: string, endpoint: string): AuditFinding {
  return { id, severity, setting, message: redactAll(message), fix: redactAll(fix), kind: 'live', location: { endpoint } };
}

/**
 * The probe guard: only loopback hosts and hosts named in the audited
 * configuration may be contacted, so `--live` never scans a network.
 */
export class ProbeScope {
  private readonly named = new Set<string>();
  /** Note a host named in the configuration. */
  allow(host: string): void {
    this.named.add(host.toLowerCase());
  }
  /** Whether `host` may be probed. */
  allowed(host: string): boolean {
    const h = host.toLowerCase().replace(/^\[|\]$/g, '');
    return isLoopbackHost(h) || this.named.has(h);
  }
}

/** Run `fn`, giving up after `ms` (the promise's own work is abandoned, never awaited further). */
export async function bounded<T>(fn: () => Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([fn(), new Promise<T>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)))]);
  } catch {
    return fallback;
  } finally {
    clearTimeout(timer);
  }
}
