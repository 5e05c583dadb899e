/**
 * kombu's priority steps, shared by the engines that keep priorities
 * themselves (Redis, SQLite, memory): a 0..9 priority falls into one of
 * four buckets, 0, 3, 6 and 9 (kombu's virtual transport default). On
 * Redis the bucket is part of the list key, so the steps are wire format.
 */

/** The bucket steps, lowest first. */
export const PRIORITY_STEPS = [0, 3, 6, 9] as const;

/** Map a 0..9 priority to its bucket step (0, 3, 6, 9). */
export function priorityStep(priority: number | undefined): number {
  const p = Math.min(9, Math.max(0, Math.trunc(priority ?? 0)));
  return p >= 9 ? 9 : p >= 6 ? 6 : p >= 3 ? 3 : 0;
}
