/**
 * Coalesce list pushes made in the same turn of the event loop into few
 * commands per list.
 *
 * A client with many sends in flight (100 `delay()` calls awaiting at once)
 * would otherwise pay for one Redis command, one reply and one promise chain
 * per task; here the pushes queued before the current batch of promise
 * continuations has settled go out as `LPUSH key v1 v2 …` commands of up to
 * `MAX_COALESCED` values, which keep their order (the consumer pops from the
 * other end, v1 first). A lone send waits for nothing: the flush runs on
 * `process.nextTick`, before any I/O.
 */

/** Sends one batch: the values in send order. Resolves when the server has them. */
export type PushBatch = (key: string, values: string[]) => Promise<unknown>;

interface Pending {
  values: string[];
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Most values gathered into one push. A burst larger than this goes out in
 * pieces while it is still being built, so Redis stores the first piece while
 * the client encodes the next (sizes from 10 to 1000 compared in
 * bench/README.md). A bulk `publishMany` hands over its values in one call
 * and is not split.
 */
export const MAX_COALESCED = 25;

export class PushCoalescer {
  private pending = new Map<string, Pending>();
  private scheduled = false;
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(private readonly send: PushBatch, private readonly maxValues = MAX_COALESCED) {}

  /** Queue `values` for `key`; resolves when the batch holding them is stored, rejects with its error. */
  push(key: string, values: readonly string[]): Promise<void> {
    let p = this.pending.get(key);
    if (p && p.values.length + values.length > this.maxValues) {
      // Full: the earlier batch goes now, so it still reaches the server first.
      this.pending.delete(key);
      this.dispatch(key, p);
      p = undefined;
    }
    if (!p) {
      let resolve!: () => void;
      let reject!: (err: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      p = { values: [], promise, resolve, reject };
      this.pending.set(key, p);
    }
    for (const v of values) p.values.push(v);
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(() => this.flush());
    }
    return p.promise;
  }

  /** Send every queued batch now. */
  flush(): void {
    this.scheduled = false;
    const batches = this.pending;
    this.pending = new Map();
    for (const [key, p] of batches) this.dispatch(key, p);
  }

  /** Send what is queued and wait until every batch sent so far has been answered (closing: before QUIT). */
  async idle(): Promise<void> {
    this.flush();
    await Promise.allSettled([...this.inFlight]);
  }

  private dispatch(key: string, p: Pending): void {
    let sent: Promise<unknown>;
    try {
      sent = this.send(key, p.values);
    } catch (err) {
      p.reject(err);
      return;
    }
    const settled = sent.then(() => p.resolve(), p.reject);
    this.inFlight.add(settled);
    void settled.finally(() => this.inFlight.delete(settled));
  }
}
