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
}

/** Defaults: 4 MiB bodies, 64 levels, 100,000 items per container. */
export const DEFAULT_DECODE_LIMITS: Readonly<DecodeLimits> = Object.freeze({
  maxBytes: 4 * 1024 * 1024,
  maxDepth: 64,
  maxItems: 100_000,
});

/** Keys that must never be honoured as object keys when they hold objects. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);
