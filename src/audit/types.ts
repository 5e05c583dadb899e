/**
 * Audit findings and the catalogue of checks CEL-001 … CEL-022 (ids,
 * titles and default severities from MITIGATIONS.md; stable for reports).
 */
import type { MitigationId } from '../config/policy.ts';

/** Severities, most severe first. */
export const SEVERITIES = ['critical', 'high', 'medium', 'low', 'info'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** Rank for comparisons: critical 4 … info 0. */
export function severityRank(s: Severity): number {
  return SEVERITIES.length - 1 - SEVERITIES.indexOf(s);
}

/** Where a finding comes from. */
export interface FindingLocation {
  /** A file (absolute), when there is one. */
  file?: string;
  /** 1-based line in `file`. */
  line?: number;
  /** A live endpoint (`redis://127.0.0.1:6379`, `http://127.0.0.1:5555/`), when probed. */
  endpoint?: string;
}

/** One audit finding. Messages, evidence and fixes never contain a secret. */
export interface AuditFinding {
  id: MitigationId;
  severity: Severity;
  /** The setting or item at fault (`broker_url`, `services.flower.ports`, `redis ACL`, …). */
  setting: string;
  /** What is wrong and why it matters. */
  message: string;
  /** What to do. */
  fix: string;
  /** `static` (read from files/env) or `live` (a probe). */
  kind: 'static' | 'live';
  location: FindingLocation;
  /** The start-up policy produced it (same rule as the worker's refusal). */
  fromPolicy?: boolean;
  /** Stable key for baselines; derived from id, setting and location when absent. */
  key?: string;
}

/** A check's catalogue entry. */
export interface CheckInfo {
  id: MitigationId;
  title: string;
  /** Severity of the threat in MITIGATIONS.md (a finding may be lower, e.g. info when only advisory). */
  severity: Severity;
}

/** Every check, in id order. */
export const CHECKS: readonly CheckInfo[] = [
  { id: 'CEL-001', title: 'Broker requires authentication', severity: 'high' },
  { id: 'CEL-002', title: 'Credentials kept out of code, config files and readable files', severity: 'medium' },
  { id: 'CEL-003', title: 'TLS to the broker with certificate verification', severity: 'high' },
  { id: 'CEL-004', title: 'Least-privilege broker users (Redis ACL, RabbitMQ permissions)', severity: 'medium' },
  { id: 'CEL-005', title: 'No code-executing serializer (pickle, yaml)', severity: 'critical' },
  { id: 'CEL-006', title: 'Explicit accept_content of data-only formats', severity: 'low' },
  { id: 'CEL-007', title: 'Message signing', severity: 'high' },
  { id: 'CEL-008', title: 'Flower/dashboard authentication', severity: 'medium' },
  { id: 'CEL-009', title: 'Dashboard authorization (roles)', severity: 'low' },
  { id: 'CEL-010', title: 'Dashboard over HTTPS with security headers', severity: 'medium' },
  { id: 'CEL-011', title: 'No default or weak credentials', severity: 'medium' },
  { id: 'CEL-012', title: 'Secret and certificate rotation (expiry)', severity: 'medium' },
  { id: 'CEL-013', title: 'Known vulnerable versions', severity: 'high' },
  { id: 'CEL-014', title: 'Result backend requires authentication', severity: 'medium' },
  { id: 'CEL-015', title: 'TLS to the result backend', severity: 'medium' },
  { id: 'CEL-016', title: 'Results encrypted at rest, with expiry', severity: 'medium' },
  { id: 'CEL-017', title: 'Safe failure records (Celery ≥ 5.2.2)', severity: 'high' },
  { id: 'CEL-018', title: 'Task argument validation', severity: 'medium' },
  { id: 'CEL-019', title: 'Submission rate limits and queue caps', severity: 'medium' },
  { id: 'CEL-020', title: 'Worker least privilege and limits', severity: 'high' },
  { id: 'CEL-021', title: 'Monitoring of authentication failures and admin actions', severity: 'medium' },
  { id: 'CEL-022', title: 'Remote control commands authenticated', severity: 'high' },
];

/** Catalogue entry of an id. */
export function checkInfo(id: MitigationId): CheckInfo {
  return CHECKS.find((c) => c.id === id)!;
}

/** Documentation page of a check, relative to the package root. */
export function checkDocPath(id: MitigationId): string {
  return `docs/audit/${id}.md`;
}

/** A broker or backend the configuration names, for the live probes. */
export interface ConfiguredEndpoint {
  role: 'broker' | 'backend';
  /** The URL with credentials (kept in memory only, never printed). */
  url: string;
  useSsl: unknown;
  /** Setting name for findings (`broker_url`, `CELERIAC_BROKER_URL`, …). */
  setting: string;
}
