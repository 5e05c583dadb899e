/**
 * Where `celeriac beat` keeps its leader lease and the last tick sent per
 * schedule entry, in the engine every instance shares (Redis, SQLite; the
 * memory engine's store lives in one process). Optional: an engine without
 * a lock (RabbitMQ) has none, and beat then uses the result backend's
 * engine or refuses to start.
 *
 * Fencing: every acquisition of the lease draws a new token from a counter
 * that only grows. A claim carries the token it was made under and is
 * refused unless that token still holds a live lease, so a leader that was
 * paused past its lease (GC, SIGSTOP, a VM freeze) cannot record, and so
 * cannot send, a tick once another instance took over.
 */
import type { AdapterContext } from './adapter-context.ts';
import type { OutboxPublish } from './broker.ts';

/** Options of an engine's `createBeatStore`. */
export interface BeatStoreOptions extends AdapterContext {
  /** The URL whose server or file keeps the state. */
  url: string;
  /** Which setting `url` comes from (names the connection). */
  side: 'broker' | 'backend';
  /** Prefix of the keys on a shared server (`brokerTransportOptions.globalKeyprefix`). */
  keyPrefix: string;
  /** One schedule's name: instances with the same name elect one leader and share the per-entry state. */
  namespace: string;
}

/** The lease as stored. */
export interface BeatLease {
  holder: string;
  token: number;
  /** When it lapses unless renewed, ms since the epoch (the server's clock for Redis). */
  expiresAt: number;
}

/** What the engine keeps about one schedule entry. */
export interface BeatEntryState {
  name: string;
  /** The scheduled time of the last tick claimed (ms since the epoch). */
  lastTick: number;
  /** Id of the task sent for it. */
  taskId: string;
  /** When the claim was recorded (ms since the epoch). */
  sentAt: number;
  /** Fencing token of the leader that claimed it. */
  token: number;
  /** Ticks sent for this entry so far. */
  total: number;
  /** Ticks passed over by the catch-up policy so far. */
  skipped: number;
  /**
   * Whether the publish of `lastTick` was confirmed. False after a leader
   * stopped between its claim and its publish: that tick may not have been
   * sent (beat chose at most once over at least once).
   */
  confirmed: boolean;
  /**
   * The tick's task message as the claimer built and signed it
   * ({@link BeatClaimInput.pending}), kept while its publish is not
   * confirmed: a new leader sends it again. Absent once confirmed, and for
   * a claim that carried its message.
   */
  pending?: string | undefined;
}

/** The outcome of {@link BeatStore.acquire}. */
export type BeatAcquire = { leader: true; token: number; expiresAt: number } | { leader: false; holder: string; expiresAt: number };

/** The outcome of {@link BeatStore.claim}. */
export type BeatClaim =
  /**
   * Recorded. `published`: the claim carried the task message too (the
   * outbox), so it is already in its queue; otherwise send it now.
   */
  | { state: 'claimed'; published: boolean }
  /** The token no longer holds the lease: stop sending. */
  | { state: 'fenced' }
  /** This tick (or a later one) is already recorded: another leader sent it. */
  | { state: 'done'; lastTick: number };

/** One claim: record `tick` as the last of `entry` under `token`. */
export interface BeatClaimInput {
  token: number;
  entry: string;
  tick: number;
  taskId: string;
  /** Earlier ticks passed over by the catch-up policy with this claim. */
  skipped: number;
  /**
   * The tick's task message, prepared by the broker: written in the same
   * atomic step as the record when the store can carry it
   * ({@link BeatStore.canCarry}), ignored otherwise.
   */
  publish?: OutboxPublish;
  /**
   * When the claim cannot carry the message: the message, serialized, kept
   * with the record until `confirm`, so a new leader can send it again if
   * this one stops in between (at least once; a signed copy sent twice is
   * run once, the replay guard refuses the second).
   */
  pending?: string;
}

/** The beat state of one engine and namespace. */
export interface BeatStore {
  readonly kind: string;
  /**
   * Take the lease for `holder` when it is free or lapsed (a new, larger
   * token), or extend it when `holder` already has it (the same token).
   */
  acquire(holder: string, leaseMs: number): Promise<BeatAcquire>;
  /** Give the lease up if `holder` still has it under `token`. */
  release(holder: string, token: number): Promise<void>;
  /**
   * True when this store can write `publish` in its claim step (same
   * engine, same server or file). Beat then prepares each tick's message
   * before claiming it.
   */
  canCarry?(publish: Pick<OutboxPublish, 'engine' | 'target'>): boolean;
  /**
   * Atomically: check that `token` holds a live lease, then record the
   * tick if it is newer than the entry's last, together with `publish`
   * when given and carriable.
   */
  claim(input: BeatClaimInput): Promise<BeatClaim>;
  /** Record that the task of `tick` (still the entry's last) was published. */
  confirm(entry: string, tick: number): Promise<void>;
  /** The lease (absent when free or lapsed) and every entry's state. */
  read(): Promise<{ lease: BeatLease | undefined; entries: BeatEntryState[] }>;
  close(): Promise<void>;
}
