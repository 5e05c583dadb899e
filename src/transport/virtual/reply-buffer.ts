/**
 * A reply queue over a subscription: what the subscription delivers waits
 * here, in order, until `receive` takes it. Used by the engines whose reply
 * queues are bindings of a direct exchange read by a consumer (AMQP, SQLite,
 * memory); Redis reads its reply lists with BRPOP instead.
 */
import type { BroadcastDelivery, ReplyQueue } from '../../core/broker.ts';
import { ValidationError } from '../../errors.ts';

/** Most replies kept unread; past it the oldest is dropped (a reader that stopped reading must not grow memory). */
const MAX_BUFFERED = 10_000;

export class ReplyBuffer implements ReplyQueue {
  private readonly items: BroadcastDelivery[] = [];
  private waiter: ((d: BroadcastDelivery | undefined) => void) | undefined;
  private closed = false;

  /** `onClose` ends the underlying subscription (and deletes the queue where the engine has one). */
  constructor(
    readonly queue: string,
    private readonly onClose: () => Promise<void>,
  ) {}

  /** Called by the subscription for each reply. */
  push(d: BroadcastDelivery): void {
    if (this.closed) return;
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      w(d);
      return;
    }
    if (this.items.length >= MAX_BUFFERED) this.items.shift();
    this.items.push(d);
  }

  receive(timeoutMs: number): Promise<BroadcastDelivery | undefined> {
    if (this.items.length > 0) return Promise.resolve(this.items.shift());
    if (this.closed || timeoutMs <= 0) return Promise.resolve(undefined);
    if (this.waiter) return Promise.reject(new ValidationError(`reply queue ${this.queue} already has a receive() waiting`, { hint: 'a reply queue has one reader: await the pending receive() before calling it again' }));
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        resolve(undefined);
      }, timeoutMs);
      this.waiter = (d) => {
        clearTimeout(timer);
        resolve(d);
      };
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.items.length = 0;
    const w = this.waiter;
    this.waiter = undefined;
    w?.(undefined);
    await this.onClose();
  }
}
