/**
 * Token buckets shared by every client of one server (the `shared` send
 * rate limits). An engine that can keep them atomically across processes
 * provides them (today: Redis, one Lua call per take).
 */
export interface SharedTokenBuckets {
  /**
   * Take `n` tokens from each named bucket at once, or none: resolves 0 when
   * taken, else the ms to wait before all of them have `n` tokens.
   * `limits[i]` (tokens per second, capacity) belongs to `buckets[i]`.
   */
  take(buckets: readonly string[], n: number, limits: ReadonlyArray<{ rate: number; capacity: number }>): Promise<number>;
  /** Close the connection behind the buckets. */
  close(): Promise<void>;
}
