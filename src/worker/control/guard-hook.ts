/**
 * The control guard of every mailbox a worker process opens: signature,
 * allow-list and audit log (src/security/control-guard.ts). Created when
 * the mailbox opens, so a bad allow-list or audit-log path stops the
 * worker's start instead of leaving control unguarded.
 */
import type { ResolvedSettings } from '../../config/options.ts';
import type { Logger } from '../../observability/logging.ts';
import { createControlGuard, type ControlGuard } from '../../security/control-guard.ts';

export type { ControlGuard } from '../../security/control-guard.ts';

/** The guard of one node's mailbox (environment: this process's). */
export function workerControlGuard(options: { settings: ResolvedSettings; logger: Logger; nodeName: string }): ControlGuard {
  return createControlGuard({ settings: options.settings, logger: options.logger, hostname: options.nodeName });
}
