/**
 * The supervisor's side of forwarded remote control: send one command to
 * some children over IPC and gather their replies, each child bounded by a
 * timeout (a child whose event loop a task blocks cannot answer, and the
 * node must still reply within the second Celery's tools wait).
 */
import type { ChildProcess } from 'node:child_process';
import type { FromChild, ToChild } from './supervisor-ipc.ts';

/** One child's answer: its reply, or why there is none (`error`). */
export interface ChildAnswer {
  pid: number | undefined;
  result?: unknown;
  error?: string;
  /** True when the child did not answer in time (it may still apply the command). */
  timedOut?: boolean;
}

export class ControlForwarder {
  private seq = 0;
  private readonly pending = new Map<number, (m: Extract<FromChild, { t: 'control-reply' }>) => void>();

  /** Ask each of `procs` to run `method`; resolves when all answered or `timeoutMs` passed. */
  ask(procs: readonly ChildProcess[], method: string, args: Record<string, unknown>, timeoutMs: number): Promise<ChildAnswer[]> {
    return Promise.all(
      procs.map(
        (proc) =>
          new Promise<ChildAnswer>((resolve) => {
            if (!proc.connected) return resolve({ pid: proc.pid, error: 'worker process not connected', timedOut: true });
            const seq = ++this.seq;
            const timer = setTimeout(() => {
              this.pending.delete(seq);
              resolve({ pid: proc.pid, error: `no answer within ${timeoutMs} ms`, timedOut: true });
            }, timeoutMs);
            timer.unref();
            this.pending.set(seq, (m) => {
              clearTimeout(timer);
              this.pending.delete(seq);
              resolve(m.error !== undefined ? { pid: proc.pid, error: m.error } : { pid: proc.pid, result: m.result });
            });
            try {
              proc.send({ t: 'control', seq, method, args } satisfies ToChild);
            } catch (err) {
              this.pending.get(seq)?.({ t: 'control-reply', seq, error: (err as Error).message });
            }
          }),
      ),
    );
  }

  /** A child's `control-reply` (a late one, after its timeout, is dropped). */
  onReply(m: Extract<FromChild, { t: 'control-reply' }>): void {
    this.pending.get(m.seq)?.(m);
  }
}
