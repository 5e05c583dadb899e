/**
 * Decoding limits applied to every message body and result record before
 * any of it reaches task code.
 */
export interface DecodeLimits {
  /** Largest accepted body, in bytes (after base64, before decoding). */
  maxBytes: number;
  /** Deepest accepted nesting of arrays and objects. */
  maxDepth: number;
  /** Most elements in one array or entries in one object. */
  maxItems: number;
  /**
   * Integers beyond ±2^53 (which a double would round): `'bigint'` (the
   * default) decodes them exactly as `bigint`; `'refuse'` refuses the
   * message with a clear error. Never rounded either way.
   */
  bigIntegers?: 'bigint' | 'refuse';
  /**
   * Largest accepted ratio of inflated to compressed size for a compressed
   * body (the inflated size is capped by `maxBytes` as well); a body that
   * would inflate further is refused before it is inflated past the cap.
   */
  maxInflateRatio?: number;
}

/** Defaults: 4 MiB bodies, 64 levels, 100,000 items per container, exact big integers, inflation ratio 200. */
export const DEFAULT_DECODE_LIMITS: Readonly<DecodeLimits> = Object.freeze({
  maxBytes: 4 * 1024 * 1024,
  maxDepth: 64,
  maxItems: 100_000,
  bigIntegers: 'bigint',
  maxInflateRatio: 200,
});

/** Keys that must never be honoured as object keys when they hold objects. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);
