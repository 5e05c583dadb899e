/**
 * The result layer shared by every backend adapter: encodes meta dicts with
 * the result serializer (and seals them when encryption is on), decodes
 * records under the decoding limits, and waits for ready states through the
 * adapter's notifications — never a polling loop.
 */
import type { DecodeLimits } from '../codec/limits.ts';
import { DEFAULT_DECODE_LIMITS } from '../codec/limits.ts';
import { JSON_SERIALIZER, MSGPACK_SERIALIZER, type Serializer } from '../codec/serializers.ts';
import { CeleriacError, DecodeError, TimeoutError } from '../errors.ts';
import { parseResultMeta, pendingMeta, READY_STATES, type ResultMeta } from '../protocol/result-meta.ts';
import type { ReplyRoute, ResultBackend, StoredRecord } from '../core/backend.ts';

/** Optional sealing of records at rest (result encryption plugs in here). */
export interface RecordSealer {
  seal(plain: Buffer, meta: ResultMeta): Buffer;
  isSealed(payload: Buffer): boolean;
  open(payload: Buffer, taskId: string): Buffer;
}

export interface ResultStoreOptions {
  serializer?: Serializer;
  /** Content types accepted when reading (default json and msgpack). */
  accept?: ReadonlySet<string>;
  /** Seconds records live (0 = forever). */
  expiresSeconds?: number;
  limits?: DecodeLimits;
  sealer?: RecordSealer;
}

export interface WaitOptions {
  /** Milliseconds to wait; undefined waits until the result arrives or `signal` aborts. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Called with each record seen before the ready one (STARTED, RETRY, a
   * custom state such as PROGRESS with its meta in `result`), as the
   * backend reports them while the task runs.
   */
  onState?: (meta: ResultMeta) => void;
}

/** Encodes, stores, reads and waits for task results over any adapter. */
/**
 * A result the result serializer cannot encode (a BigInt, a cycle, a
 * function…). Retrying cannot help: the worker stores FAILURE `EncodeError`
 * for the task instead, as Celery does.
 */
export class ResultEncodeError extends CeleriacError {
  /** What the serializer said, for the FAILURE record. */
  readonly reason: string;
  constructor(taskId: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super('ERR_RESULT_ENCODE', `the result of task ${taskId} cannot be encoded: ${reason}`, {
      hint: 'return data the result serializer can encode (JSON: plain objects, arrays, strings, finite numbers, booleans, null)',
    });
    this.reason = reason;
  }
}

export class ResultStore {
  readonly backend: ResultBackend;
  private readonly serializer: Serializer;
  private readonly accept: ReadonlySet<string>;
  private readonly expiresSeconds: number;
  private readonly limits: DecodeLimits;
  private readonly sealer: RecordSealer | undefined;

  constructor(backend: ResultBackend, options: ResultStoreOptions = {}) {
    this.backend = backend;
    this.serializer = options.serializer ?? JSON_SERIALIZER;
    this.accept = options.accept ?? new Set([JSON_SERIALIZER.contentType, MSGPACK_SERIALIZER.contentType]);
    this.expiresSeconds = options.expiresSeconds ?? 86_400;
    this.limits = options.limits ?? DEFAULT_DECODE_LIMITS;
    this.sealer = options.sealer;
  }

  /** Encode a meta dict into what the adapter stores (`to`: the message's reply route, for `rpc://`). */
  encode(meta: ResultMeta, to?: ReplyRoute): StoredRecord {
    let payload: Buffer;
    try {
      payload = this.serializer.encode(meta);
    } catch (err) {
      throw new ResultEncodeError(meta.task_id, err);
    }
    if (this.sealer) payload = this.sealer.seal(payload, meta);
    // The state goes beside the payload: a sealed payload hides it from the backend's SUCCESS rule.
    const record: StoredRecord = { taskId: meta.task_id, state: String(meta.status), payload };
    if (to) {
      record.replyTo = to.replyTo;
      record.correlationId = to.correlationId;
    }
    return record;
  }

  /** Decode a stored payload (JSON or msgpack, detected by its first byte). */
  decode(payload: Buffer, taskId: string): ResultMeta {
    let bytes = payload;
    if (this.sealer?.isSealed(bytes)) bytes = this.sealer.open(bytes, taskId);
    const first = firstNonSpace(bytes);
    let serializer: Serializer;
    if (first === 0x7b) serializer = JSON_SERIALIZER;
    else if ((first >= 0x80 && first <= 0x8f) || first === 0xde || first === 0xdf) serializer = MSGPACK_SERIALIZER;
    else throw new DecodeError(`result record for ${taskId} is neither a JSON nor a msgpack map`, { code: 'ERR_RESULT' });
    if (!this.accept.has(serializer.contentType)) {
      throw new DecodeError(`result record for ${taskId} is ${serializer.name}, which resultAcceptContent does not allow`, { code: 'ERR_RESULT' });
    }
    return parseResultMeta(serializer.decode(bytes, this.limits), taskId);
  }

  /** Store one meta dict (adapters batch concurrent calls); `to` is the message's reply route, for `rpc://`. */
  store(meta: ResultMeta, to?: ReplyRoute): Promise<void> {
    try {
      return this.backend.store([this.encode(meta, to)], { expiresSeconds: this.expiresSeconds });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Store records already made by `encode` (the worker batches a turn's results into one call). */
  storeRecords(records: readonly StoredRecord[]): Promise<void> {
    return this.backend.store(records, { expiresSeconds: this.expiresSeconds });
  }

  /** Store many at once. */
  async storeMany(metas: readonly ResultMeta[]): Promise<void> {
    if (metas.length === 0) return;
    await this.backend.store(metas.map((m) => this.encode(m)), { expiresSeconds: this.expiresSeconds });
  }

  /** The current meta, or a PENDING meta when nothing is stored. */
  async get(taskId: string): Promise<ResultMeta> {
    const payload = await this.backend.get(taskId);
    return payload ? this.decode(payload, taskId) : pendingMeta(taskId);
  }

  /**
   * Wait until the task reaches a ready state (SUCCESS, FAILURE, REVOKED).
   * Subscribes first, then reads once, so a result stored in between is
   * never missed; a result published while that read is on its way is
   * taken at once (the read's reply is not waited for: one hop less).
   */
  async wait(taskId: string, options: WaitOptions = {}): Promise<ResultMeta> {
    const { timeoutMs, signal } = options;
    signal?.throwIfAborted();
    let settle!: (m: ResultMeta) => void;
    let fail!: (e: unknown) => void;
    const done = new Promise<ResultMeta>((resolve, reject) => {
      settle = resolve;
      fail = reject;
    });
    const onPayload = (payload: Buffer): void => {
      try {
        const meta = this.decode(payload, taskId);
        if (READY_STATES.has(meta.status)) settle(meta);
        else options.onState?.(meta);
      } catch (err) {
        fail(err);
      }
    };
    const unwatch = await this.backend.watch(taskId, onPayload);
    let timer: NodeJS.Timeout | undefined;
    const onAbort = (): void => fail(signal!.reason);
    try {
      this.backend.get(taskId).then((current) => {
        if (current) onPayload(current);
      }, fail);
      if (timeoutMs !== undefined) {
        timer = setTimeout(
          () => fail(new TimeoutError(`no result for task ${taskId} within ${timeoutMs} ms`, { hint: "is a worker consuming the task's queue? A message the worker refuses (unsigned, a content type it does not accept, over a size limit) is dead-lettered to <queue>.dlq without a result: the worker's log names it; `celeriac send --wait` reports it. Raise the timeout for long tasks" })),
          timeoutMs,
        );
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      return await done;
    } finally {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      unwatch();
    }
  }

  async forget(taskId: string): Promise<void> {
    await this.backend.forget(taskId);
  }

  // ── canvas: chord parts and saved groups (client/canvas/, worker/canvas/) ──
  /** Seconds a record lives (chord keys and saved groups expire with results, as in Celery). */
  get expires(): number {
    return this.expiresSeconds;
  }

  /**
   * Encode a value that is not a task record (a chord part, a saved group)
   * with the result serializer; sealed under `context` when encryption is on,
   * so a part cannot be moved to another group.
   */
  encodeValue(value: unknown, context: string): Buffer {
    let payload: Buffer;
    try {
      payload = this.serializer.encode(value);
    } catch (err) {
      throw new ResultEncodeError(context, err);
    }
    return this.sealer ? this.sealer.seal(payload, { task_id: context, status: 'SUCCESS', result: null, traceback: null, children: [], date_done: null }) : payload;
  }

  /** Decode what `encodeValue` (or Celery) wrote under `context`. */
  decodeValue(payload: Buffer, context: string): unknown {
    let bytes = payload;
    if (this.sealer?.isSealed(bytes)) bytes = this.sealer.open(bytes, context);
    const first = firstNonSpace(bytes);
    const serializer = first === 0x7b || first === 0x5b ? JSON_SERIALIZER : MSGPACK_SERIALIZER;
    if (!this.accept.has(serializer.contentType)) {
      throw new DecodeError(`${context} is ${serializer.name}, which resultAcceptContent does not allow`, { code: 'ERR_RESULT' });
    }
    return serializer.decode(bytes, this.limits);
  }

  async close(): Promise<void> {
    await this.backend.close();
  }
}

function firstNonSpace(b: Buffer): number {
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return c;
  }
  return -1;
}
