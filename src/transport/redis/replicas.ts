/**
 * Redis safe mode (`waitForReplicas`): a write is reported stored only once
 * replicas hold it. Redis replicates asynchronously, so a primary that dies
 * right after answering a write can take it along: the replica the
 * sentinels promote never saw it. `WAIT n timeout`, sent on the same
 * connection after the write, answers how many replicas have acknowledged
 * every write made on that connection so far; when fewer than `n` do in
 * time, the send (or result store) fails with `ConnectionError`
 * `ERR_NOT_REPLICATED` — the caller was not told the write is safe, and may
 * send it again (at worst a duplicate, never a loss).
 */
import type { Redis } from 'ioredis';
import { ConnectionError } from '../../errors.ts';

/** Replicas to wait for and for how long. */
export interface ReplicaWait {
  replicas: number;
  timeoutMs: number;
}

/**
 * Wait until `w.replicas` replicas acknowledged the writes made on `client`
 * so far (no-op when `w.replicas` is 0). `what` names the write in the error.
 */
export async function awaitReplicas(client: Redis, w: ReplicaWait, what: string): Promise<void> {
  if (w.replicas <= 0) return;
  const acked = Number(await client.wait(w.replicas, w.timeoutMs));
  if (acked >= w.replicas) return;
  throw new ConnectionError(`${what}: only ${acked} of ${w.replicas} replica(s) acknowledged it within ${w.timeoutMs} ms, so a failover could lose it`, {
    code: 'ERR_NOT_REPLICATED',
    hint: 'it is stored on the primary but not yet on a replica: send it again (Celery tasks are delivered at least once), and check that the replicas are up and connected (INFO replication); lower waitForReplicas only if losing it in a failover is acceptable',
  });
}
