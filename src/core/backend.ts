/**
 * The ResultBackend interface every store implements (Redis, SQLite,
 * PostgreSQL, memory). Adapters move encoded records; encoding, decryption
 * and waiting logic live in `results.ts`, shared by all of them.
 */

/** An encoded record plus the state it carries (adapters must not decode it). */
export interface StoredRecord {
  taskId: string;
  /**
   * The record's state (`SUCCESS`, `FAILURE`…), given in clear by the result
   * layer, which knows it before sealing: adapters enforce the SUCCESS rule
   * with it, never by reading `payload` (a sealed record hides it).
   */
  state: string;
  /** Encoded meta (JSON or msgpack bytes, possibly encrypted). */
  payload: Buffer;
  /**
   * The task message's `reply_to` and `correlation_id`, when known: where
   * the `rpc://` backend sends the record (Celery's rpc backend replies to
   * the caller's queue). Backends keyed by task id ignore it.
   */
  replyTo?: string;
  correlationId?: string;
}

/** A task message's reply route: its `reply_to` and `correlation_id` properties. */
export interface ReplyRoute {
  replyTo: string;
  correlationId: string;
}

export interface StoreOptions {
  /** Seconds until the record expires; 0 or undefined = never. */
  expiresSeconds?: number;
}

/**
 * A named set of ids, each with an expiry, kept beside the results (the
 * revoked task ids: worker/control/revoked.ts). Every id is an entry of its
 * own and `add` is one atomic step, so two processes adding different ids
 * at the same instant both keep theirs.
 */
export interface ExpiringIdSet {
  /** Add `entries` (id, expiry in ms since the epoch; a later expiry wins), drop the expired, keep at most `maxSize` (the soonest to expire go first). */
  add(entries: ReadonlyArray<readonly [string, number]>, maxSize: number): Promise<void>;
  /** The ids not yet expired, with their expiries. */
  load(): Promise<Map<string, number>>;
}

/**
 * One header task's outcome in a chord join: Celery's `[1, task_id, state,
 * result]` entry, encoded with the result serializer.
 */
export interface ChordPart {
  groupId: string;
  /** The task's `group_index` (its place in the header); null sorts it last, as Celery's `+inf` score. */
  groupIndex: number | null;
  entry: Buffer;
}

export interface ResultBackend {
  readonly kind: string;
  connect(): Promise<void>;
  /**
   * Write records and notify waiters. A stored SUCCESS is never overwritten
   * (Celery's rule against duplicate deliveries rewriting a result), whatever
   * the payload's encoding: the adapter keeps each record's `state` beside it.
   */
  store(records: readonly StoredRecord[], options?: StoreOptions): Promise<void>;
  /** The record's payload, or undefined when there is none. */
  get(taskId: string): Promise<Buffer | undefined>;
  /** Payloads of many records at once (undefined where missing). */
  getMany(taskIds: readonly string[]): Promise<Array<Buffer | undefined>>;
  /**
   * Call `onRecord` with each payload stored for `taskId` from now on. The
   * returned promise resolves once the subscription is active; the function
   * it yields unsubscribes.
   */
  watch(taskId: string, onRecord: (payload: Buffer) => void): Promise<() => void>;
  /** Delete a record. */
  forget(taskId: string): Promise<void>;
  close(): Promise<void>;
  // ── canvas (chords and saved groups); a backend without them has no chord join ──
  /** Celery's `celery-taskset-meta-<id>` record of a saved group (encoded `{"result": as_tuple}`). */
  saveGroup?(groupId: string, payload: Buffer, options?: StoreOptions): Promise<void>;
  /** The saved group's payload, or undefined. */
  getGroup?(groupId: string): Promise<Buffer | undefined>;
  /** Delete a saved group. */
  forgetGroup?(groupId: string): Promise<void>;
  /** The number of header parts a chord waits for (Redis: Celery's `<group key>.s`). */
  setChordSize?(groupId: string, size: number, options?: StoreOptions): Promise<void>;
  /**
   * Add a header part, atomically. Resolves with every part's entry, in
   * header order, to the one call whose part completed the header (the
   * join's keys are deleted then); otherwise undefined, also when no size
   * was set for the group.
   */
  chordPartReturn?(part: ChordPart, options?: StoreOptions): Promise<Buffer[] | undefined>;
  /**
   * Wait for `count` more parts (Celery's `Task.add_to_chord`; Redis: INCR
   * of Celery's `<group key>.t`, which the join adds to `.s`).
   */
  addToChord?(groupId: string, count: number, options?: StoreOptions): Promise<void>;
  /** Use new credentials from now on without dropping connections (secret rotation). */
  updateCredentials?(url: string): Promise<void>;
  /**
   * Backends that receive results on a reply queue of this client
   * (`rpc://`): declare that queue and start reading it (once), and return
   * its name, which the client sends as each task's `reply_to`.
   */
  replyRoute?(): Promise<string>;
  /** The expiring id set `name`, written atomically per id (engines that can; others keep one merged record). */
  expiringIdSet?(name: string): ExpiringIdSet;
}
