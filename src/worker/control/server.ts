/**
 * The worker's mailbox (Celery's pidbox): the generic mailbox of
 * src/control/mailbox.ts answering with the worker's command table
 * (commands.ts) for `host`.
 */
import type { Broker } from '../../core/broker.ts';
import type { Logger } from '../../observability/logging.ts';
import { startMailbox, type ControlServer } from '../../control/mailbox.ts';
import { COMMANDS, type ControlHost } from './commands.ts';
import type { ControlGuard } from './guard-hook.ts';

export { isExpired, isForNode, parseControlRequest, type ControlRequest, type ControlServer } from '../../control/mailbox.ts';

export interface ControlServerOptions {
  broker: Broker;
  host: ControlHost;
  guard: ControlGuard;
  logger: Logger;
  /** Celery's `control_exchange` (default `celery`). */
  exchangeName?: string;
  /**
   * A prefork child: act on these methods only, on a queue of its own, and
   * never reply (its supervisor answers for the node).
   */
  listenOnly?: readonly string[];
}

/** Start answering control messages for `host`. */
export async function startControlServer(options: ControlServerOptions): Promise<ControlServer> {
  const { host } = options;
  return startMailbox({
    ...options,
    nodeName: host.nodeName,
    command: (method) => {
      const spec = Object.hasOwn(COMMANDS, method) ? COMMANDS[method] : undefined;
      return spec && { replies: spec.replies, run: (args, clock) => spec.run({ host, clock }, args) };
    },
  });
}
