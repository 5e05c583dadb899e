/**
 * The control guard's signature (src/security/control-guard.ts, built
 * separately): every control message is admitted or refused before
 * dispatch. Until that module is wired in, `passThroughGuard` admits all.
 * MERGE: replace passThroughGuard with createControlGuard(options).
 */
import type { WireMessage } from '../../protocol/types.ts';

export type ControlAdmission = { allowed: true; who: string } | { allowed: false; reason: string };

/** One audited control command. */
export interface ControlAuditEntry {
  who: string;
  method: string;
  outcome: 'ok' | 'refused' | 'error' | 'unknown';
  at: string;
  reason?: string;
}

export interface ControlGuard {
  admit(message: WireMessage, method: string): Promise<ControlAdmission>;
  audit(entry: ControlAuditEntry): void;
}

/** Admits every command and audits nothing (the behaviour of Celery, which signs no control message). */
export function passThroughGuard(): ControlGuard {
  return {
    admit: async () => ({ allowed: true, who: 'anonymous' }),
    audit: () => undefined,
  };
}
