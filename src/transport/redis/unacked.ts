/**
 * kombu's layout of an unacknowledged Redis message — the `unacked` hash
 * holds `[envelope, exchange, routing key]` under the delivery tag — and the
 * records written for dead letters. Shared by the broker (restore, recovery)
 * and the consumer (requeue, dead-letter).
 */

/** Flag an envelope as redelivered, the way kombu does when it puts a message back. */
export function markRedelivered(envelope: string): string {
  try {
    const e = JSON.parse(envelope) as { headers?: Record<string, unknown>; properties?: { delivery_info?: Record<string, unknown> } };
    if (e.headers && typeof e.headers === 'object') e.headers.redelivered = true;
    if (e.properties?.delivery_info && typeof e.properties.delivery_info === 'object') e.properties.delivery_info.redelivered = true;
    return JSON.stringify(e);
  } catch {
    return envelope;
  }
}

export function parseUnackedEntry(entry: string): { exchange: string; routingKey: string; priority: number; redelivered: string } | undefined {
  try {
    const v = JSON.parse(entry) as unknown;
    if (!Array.isArray(v) || v.length < 3 || typeof v[0] !== 'object' || v[0] === null) return undefined;
    const env = v[0] as { properties?: { priority?: unknown } };
    const envelope = JSON.stringify(env);
    return {
      exchange: typeof v[1] === 'string' ? v[1] : '',
      routingKey: typeof v[2] === 'string' ? v[2] : '',
      priority: typeof env.properties?.priority === 'number' ? env.properties.priority : 0,
      redelivered: markRedelivered(envelope),
    };
  } catch {
    return undefined;
  }
}

/** Dead-letter records keep a message whole up to this size; beyond it, its id, size and first KiB (the store stays bounded). */
const DEAD_LETTER_RECORD_MAX = 64 * 1024;

export function deadLetterRecord(queue: string, reason: string, raw: string): string {
  const at = Date.now() / 1000;
  if (raw.length <= DEAD_LETTER_RECORD_MAX) return JSON.stringify({ reason, queue, at, payload: raw });
  // Keep the envelope's headers and properties (its id, task, signature) and cut the body to 1 KiB.
  try {
    const e = JSON.parse(raw) as { body?: unknown };
    if (typeof e.body === 'string' && e.body.length > 1368) {
      e.body = e.body.slice(0, 1368);
      const payload = JSON.stringify(e);
      if (payload.length <= DEAD_LETTER_RECORD_MAX) return JSON.stringify({ reason, queue, at, size: raw.length, truncated: true, payload });
    }
  } catch {
    // not JSON: cut below
  }
  const id = /"id":\s*"([^"]{1,64})"/.exec(raw.slice(-8192))?.[1];
  return JSON.stringify({ reason, queue, at, id, size: raw.length, truncated: true, payload: raw.slice(0, 1024) });
}
