/**
 * Logging and counting the security policy's findings. The policy
 * (src/config/policy.ts) is pure and returns findings; these helpers are
 * what its callers (app start-up, the worker CLI, SIGHUP reload) use, so
 * every caller logs the same lines and bumps the same counters.
 */
import type { Logger } from 'pino';
import { evaluatePolicy, InsecureConfigError, type Finding, type PolicyInput, type PolicyReport } from '../config/policy.ts';
import { recordSecurityEvent } from './security-events.ts';

type PolicyLogger = Pick<Logger, 'warn' | 'error' | 'info'>;

/** Log and count one accepted finding as a `policy_warning` security event (warn level). */
export function recordPolicyWarning(w: Finding, logger?: PolicyLogger): void {
  recordSecurityEvent('policy_warning', { id: w.id, setting: w.setting, reason: w.message, fix: w.fix, ...(w.override ? { override: w.override } : {}) }, logger);
}

/**
 * Count each refusal as a `policy_refusal` security event; `reasonSuffix`
 * is appended to each reason (a refused reload says the current
 * credentials are kept).
 */
export function recordPolicyRefusals(refusals: readonly Finding[], reasonSuffix = '', logger?: PolicyLogger): void {
  for (const r of refusals) recordSecurityEvent('policy_refusal', { id: r.id, setting: r.setting, reason: `${r.message}${reasonSuffix}` }, logger);
}

/**
 * Evaluate the policy, log every warning (as a `policy_warning` security
 * event, at warn level), count every refusal and throw an
 * {@link InsecureConfigError} listing every refusal, each with its setting
 * and fix. Returns the report when nothing is refused.
 */
export function enforcePolicy(input: PolicyInput, logger?: PolicyLogger): PolicyReport {
  const report = evaluatePolicy(input);
  for (const w of report.warnings) recordPolicyWarning(w, logger);
  if (report.refusals.length > 0) {
    recordPolicyRefusals(report.refusals);
    throw new InsecureConfigError(report.refusals);
  }
  return report;
}
