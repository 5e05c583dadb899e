/**
 * A consumer loop's doorbell: `ring()` wakes a pending `wait()` at once, and
 * `rung` tells the loop that something changed while it was busy (so a wake
 * arriving during a fetch is never lost). Shared by the polling adapters.
 */
export class Doorbell {
  /** Set by `ring()`; the loop clears it before each fetch. */
  rung = false;
  private pending: (() => void) | undefined;

  ring(): void {
    this.rung = true;
    const p = this.pending;
    if (p) {
      this.pending = undefined;
      p();
    }
  }

  /** Resolve after `ms`, or as soon as `ring()` is called. `unref`: the timer alone keeps no process alive. */
  wait(ms: number, unref = false): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.pending = undefined;
        resolve();
      }, ms);
      if (unref) t.unref();
      this.pending = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
}
