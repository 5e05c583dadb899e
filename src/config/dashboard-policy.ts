/**
 * The dashboard's start-up rules (MITIGATIONS CEL-008 authentication,
 * CEL-010 transport), as pure findings. One implementation, two callers:
 * `createDashboardServer` and `celeriac dashboard` refuse to start on any
 * refusal, and `celeriac audit` reports the same findings for a
 * `celeriac dashboard` command it reads in a deployment file.
 *
 * | rule | id | kind |
 * | --- | --- | --- |
 * | no authentication method (neither a users file nor OIDC) | CEL-008 | refusal |
 * | a users file with no accounts (and no OIDC) | CEL-008 | refusal |
 * | a users file (password hashes) readable or writable by others | CEL-008 | refusal |
 * | a metrics bearer token shorter than 32 characters | CEL-008 | refusal |
 * | bound off loopback without a certificate | CEL-010 | refusal |
 * | a self-signed certificate off loopback | CEL-010 | warning |
 */
import type { Finding, PolicyReport } from './policy.ts';
import { fileTrustProblem } from './file-trust.ts';
import { isLoopbackHost } from './url.ts';

/** Metrics tokens shorter than this are refused. */
export const MIN_METRICS_TOKEN_LENGTH = 32;

/** What the rules look at: the dashboard's settings, or what an audit could read of them. */
export interface DashboardPolicyInput {
  /** Bind address (default 127.0.0.1). */
  host?: string | undefined;
  /** `files`/`pem`: the operator's certificate; `self-signed`: generated at start even off loopback; absent: none. */
  tls?: 'files' | 'pem' | 'self-signed' | undefined;
  /** The users file, when configured: its path (checked for mode and owner when `checkFile`) and, when known, its account count. */
  users?: { path?: string | undefined; accounts?: number | undefined } | undefined;
  /** OIDC configured. */
  oidc?: boolean | undefined;
  /** Length of the metrics bearer token, when one is configured. */
  metricsTokenLength?: number | undefined;
  /** Check the users file's mode and owner on this machine (default true; the audit of a deployment file turns it off). */
  checkFile?: boolean | undefined;
}

const USERS_ADD = '`celeriac dashboard users add <name> --role admin --users-file <path>`';

/** The dashboard's refusals and warnings (never a secret in a message). */
export function dashboardPolicy(input: DashboardPolicyInput): PolicyReport {
  const refusals: Finding[] = [];
  const warnings: Finding[] = [];
  const host = input.host ?? '127.0.0.1';
  if (!input.users && !input.oidc) {
    refusals.push({ id: 'CEL-008', setting: 'auth', message: 'the dashboard refuses to start without an authentication method',
      fix: `pass --users-file <path> (create an account with ${USERS_ADD}) or --oidc-issuer with --oidc-client-id` });
  }
  if (input.users && !input.oidc && input.users.accounts === 0) {
    refusals.push({ id: 'CEL-008', setting: 'users-file', message: `the users file${input.users.path ? ` ${input.users.path}` : ''} has no accounts`, fix: `create one with ${USERS_ADD}` });
  }
  if (input.users?.path && input.checkFile !== false) {
    const p = fileTrustProblem(input.users.path, { secret: true });
    if (p) refusals.push({ id: 'CEL-008', setting: 'users-file', message: `the users file ${input.users.path} (password hashes) ${p.problem}`, fix: p.fix });
  }
  if (input.metricsTokenLength !== undefined && input.metricsTokenLength < MIN_METRICS_TOKEN_LENGTH) {
    refusals.push({ id: 'CEL-008', setting: 'metrics-token', message: `the metrics token is shorter than ${MIN_METRICS_TOKEN_LENGTH} characters`, fix: 'generate one with `celeriac secrets generate password`' });
  }
  if (!input.tls && !isLoopbackHost(host)) {
    refusals.push({ id: 'CEL-010', setting: 'bind', message: `the dashboard refuses to listen on ${host} without TLS`,
      fix: 'pass --tls-cert <file> and --tls-key <file> with your certificate (or --tls-self-signed to accept a generated one), or bind to 127.0.0.1 with --bind' });
  }
  if (input.tls === 'self-signed' && !isLoopbackHost(host)) {
    warnings.push({ id: 'CEL-010', setting: 'tls', message: `the dashboard on ${host} uses a self-signed certificate generated at start: browsers warn and nothing proves to them that they reach this server`,
      fix: 'pass --tls-cert <file> --tls-key <file> with a certificate your users trust' });
  }
  return { refusals, warnings };
}
