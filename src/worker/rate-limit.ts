/**
 * Per-task execution rate limits, as Celery enforces them: a token bucket
 * per task type and per worker, capacity 1, refilled at the given rate.
 */

export class TokenBucket {
  private tokens: number;
  private last: number;

  /** `rate` tokens per second; `capacity` tokens at most. */
  constructor(
    private rate: number,
    private readonly capacity = 1,
    now: number = performance.now(),
  ) {
    this.tokens = capacity;
    this.last = now;
  }

  setRate(rate: number): void {
    this.rate = rate;
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) / 1000) * this.rate);
      this.last = now;
    }
  }

  /** Take a token if one is there; otherwise return the ms until one will be. */
  take(now: number = performance.now()): number {
    if (this.rate <= 0) return 0;
    this.refill(now);
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) / this.rate) * 1000);
  }
}
