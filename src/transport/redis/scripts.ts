/**
 * Celeriac's Redis scripts, one typed function each. Every script is a file
 * in `./lua/` with a KEYS/ARGV header; its name ends with the keys it takes,
 * BullMQ style, so a call cannot pass a wrong key count:
 *
 * - `unlock-1.lua`: exactly one key;
 * - `store-2n.lua`: two keys per item (`n` alone: one per item);
 * - `reserve-2+2n.lua`: two keys, then two per item.
 *
 * The functions take named keys and arguments, check the key count against
 * the file name and run the script with EVALSHA, falling back to EVAL when
 * the server does not have it cached (ioredis `defineCommand`, defined on
 * each connection at its first call). Files are read when this module loads,
 * so a package that lacks one fails at start, not at the first call.
 */
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { CeleriacError } from '../../errors.ts';

/** A connection the script functions run on (any ioredis client; scripts are defined on it when first used). */
export type ScriptClient = Redis;

type Arg = string | number | Buffer;

/** A script file: its source, the command name it is defined under, and the key count its name declares. */
interface Script {
  readonly file: string;
  readonly command: string;
  readonly lua: string;
  /** Keys the script always takes. */
  readonly fixed: number;
  /** Keys per item (0: a fixed count). */
  readonly perItem: number;
}

const LUA_DIR = new URL('./lua/', import.meta.url);
const NAME = /^([a-z][a-z-]*?)-(?:(\d+)|(\d*)n|(\d+)\+(\d*)n)\.lua$/;

/** @internal The script name and key shape a file name declares (`dead-letter-3.lua`: 3 keys; `reserve-2+2n.lua`: 2, then 2 per item). */
export function keyShape(file: string): { name: string; fixed: number; perItem: number } {
  const m = NAME.exec(file);
  if (!m) throw new CeleriacError('ERR_SCRIPT_NAME', `Lua script ${file}: the name does not end with its key count`, { hint: 'name it <name>-2.lua, -n.lua, -2n.lua or -2+2n.lua, as its KEYS header says' });
  const [, name, fixedOnly, perOnly, fixedPart, perPart] = m;
  if (fixedOnly !== undefined) return { name: name!, fixed: Number(fixedOnly), perItem: 0 };
  const per = perOnly ?? perPart;
  return { name: name!, fixed: fixedPart === undefined ? 0 : Number(fixedPart), perItem: per === undefined || per === '' ? 1 : Number(per) };
}

/** @internal Whether `count` keys fit the shape. */
export function fitsShape(shape: { fixed: number; perItem: number }, count: number): boolean {
  const extra = count - shape.fixed;
  return extra >= 0 && (shape.perItem === 0 ? extra === 0 : extra % shape.perItem === 0);
}

function load(file: string): Script {
  const { name, fixed, perItem } = keyShape(file);
  return { file, command: `celeriac_${name.replace(/-/g, '_')}`, lua: readFileSync(new URL(file, LUA_DIR), 'utf8'), fixed, perItem };
}

const S = {
  reserve: load('reserve-2+2n.lua'),
  ack: load('ack-2.lua'),
  requeue: load('requeue-3.lua'),
  restore: load('restore-2+n.lua'),
  deadLetter: load('dead-letter-3.lua'),
  unlock: load('unlock-1.lua'),
  redrive: load('redrive-2.lua'),
  publishCapped: load('publish-capped-n.lua'),
  pushVerified: load('push-verified-n.lua'),
  store: load('store-n.lua'),
  takeTokens: load('take-tokens-n.lua'),
  replaySync: load('replay-sync-n.lua'),
  replayRefresh: load('replay-refresh-n.lua'),
  beatAcquire: load('beat-acquire-2.lua'),
  beatRelease: load('beat-release-1.lua'),
  beatClaim: load('beat-claim-2+n.lua'),
  beatConfirm: load('beat-confirm-1.lua'),
  expiringSetAdd: load('expiring-set-add-1.lua'),
  chordPart: load('chord-part-3.lua'),
} as const;

type Runner = (...args: Arg[]) => Promise<unknown>;

/** The ioredis command `client` runs `script` with, defined on first use. */
function command(client: ScriptClient, script: Script): Runner {
  const c = client as unknown as Record<string, Runner | undefined>;
  let fn = c[script.command];
  if (typeof fn !== 'function') {
    client.defineCommand(script.command, { lua: script.lua });
    fn = c[script.command]!;
  }
  return fn;
}

/**
 * @internal The name of the ioredis command that runs script `name` on
 * `client`, defined there if it was not (tests wrap it to simulate lost
 * replies).
 */
export function scriptCommand(client: ScriptClient, name: keyof typeof S): string {
  command(client, S[name]);
  return S[name].command;
}

/** Run `script` on `client` with `keys` (checked against the count its file name declares) and `args`. */
function run<T>(client: ScriptClient, script: Script, keys: readonly string[], args: readonly Arg[]): Promise<T> {
  if (!fitsShape(script, keys.length)) {
    const wanted = `${script.fixed}${script.perItem ? ` + ${script.perItem}·n` : ''}`;
    return Promise.reject(new CeleriacError('ERR_SCRIPT_KEYS', `${script.file} takes ${wanted} keys, not ${keys.length}`, { hint: 'a bug in Celeriac (the script and its function disagree): please report it' }));
  }
  return command(client, script).call(client, keys.length, ...keys, ...args) as Promise<T>;
}

/** kombu's unacknowledged-delivery bookkeeping: the `unacked` hash and its `unacked_index` sorted set. */
export interface UnackedKeys {
  unacked: string;
  index: string;
}

/**
 * `reserve-2+2n.lua`: take up to `max` messages from `lists` (in order) and
 * record them as unacknowledged in one step. See the file for the reply.
 */
export function reserve(
  client: ScriptClient,
  keys: UnackedKeys & { lists: readonly string[]; deadLetters: readonly string[] },
  args: {
    /** UNIX seconds, as text. */
    now: string;
    max: number;
    /** The exchange, JSON-encoded. */
    exchange: string;
    /** The routing key of each list, JSON-encoded. */
    routingKeys: readonly string[];
    tagPrefix: string;
    firstSeq: number;
    maxEnvelopeBytes: number;
    deadLetterMax: number;
  },
): Promise<Array<number | string>> {
  return run(client, S.reserve, [keys.unacked, keys.index, ...keys.lists, ...keys.deadLetters], [
    args.now, args.max, args.exchange, ...args.routingKeys, args.tagPrefix, args.firstSeq, args.maxEnvelopeBytes, args.deadLetterMax,
  ]);
}

/** `ack-2.lua`: forget acknowledged deliveries; returns how many were still unacknowledged. */
export function ack(client: ScriptClient, keys: UnackedKeys, tags: readonly string[]): Promise<number> {
  return run(client, S.ack, [keys.unacked, keys.index], tags);
}

/** `requeue-3.lua`: give one delivery back to `list` if still unacknowledged; 1 when requeued. */
export function requeue(client: ScriptClient, keys: UnackedKeys & { list: string }, args: { tag: string; envelope: string; where: 'head' | 'tail' }): Promise<number> {
  return run(client, S.requeue, [keys.unacked, keys.index, keys.list], [args.tag, args.envelope, args.where]);
}

/** `restore-2+n.lua`: move an expired delivery back to its queue lists unless acked or renewed since `cutoff`; 1 when restored. */
export function restore(client: ScriptClient, keys: UnackedKeys & { lists: readonly string[] }, args: { tag: string; cutoff: number; envelope: string }): Promise<number> {
  return run(client, S.restore, [keys.unacked, keys.index, ...keys.lists], [args.tag, args.cutoff, args.envelope]);
}

/** `dead-letter-3.lua`: move one delivery to a dead-letter list (keeping at most `max`, 0 = all); 1 when moved. */
export function deadLetter(client: ScriptClient, keys: UnackedKeys & { deadLetter: string }, args: { tag: string; record: string; max: number }): Promise<number> {
  return run(client, S.deadLetter, [keys.unacked, keys.index, keys.deadLetter], [args.tag, args.record, args.max]);
}

/** `redrive-2.lua`: remove `record` from the dead-letter list and push `envelope` onto `target`, atomically; 1 when moved. */
export function redrive(client: ScriptClient, keys: { deadLetters: string; target: string }, args: { record: string; envelope: string }): Promise<number> {
  return run(client, S.redrive, [keys.deadLetters, keys.target], [args.record, args.envelope]);
}

/** `unlock-1.lua`: delete `lock` if it still holds `token`; 1 when released. */
export function unlock(client: ScriptClient, keys: { lock: string }, args: { token: string }): Promise<number> {
  return run(client, S.unlock, [keys.lock], [args.token]);
}

/**
 * `publish-capped-n.lua`: push `values` onto bucket `bucket` (1-based into
 * `buckets`) if the queue stays within `max`; the new length, or
 * -(current length) - 1 when full.
 */
export function publishCapped(client: ScriptClient, keys: { buckets: readonly string[] }, args: { max: number; bucket: number; values: readonly string[] }): Promise<number> {
  return run(client, S.publishCapped, keys.buckets, [args.max, args.bucket, ...args.values]);
}

/**
 * `push-verified-n.lua`: push those of `values` that bucket `bucket` does not
 * hold within `depth` of its head (a resend after a lost reply); how many were
 * pushed, or -(current length) - 1 when `cap` (0 = none) refuses them.
 */
export function pushVerified(
  client: ScriptClient,
  keys: { buckets: readonly string[] },
  args: { cap: number; bucket: number; depth: number; values: readonly string[] },
): Promise<number> {
  return run(client, S.pushVerified, keys.buckets, [args.cap, args.bucket, args.depth, ...args.values]);
}

/** One result record for {@link storeResults}. */
export interface ResultWrite {
  /** `celery-task-meta-<id>`. */
  key: string;
  payload: Buffer;
}

/** `store-n.lua`: write records (expiring after `ttl` s, 0 = never) unless a SUCCESS is stored; how many were written. */
export function storeResults(client: ScriptClient, ttl: number, records: readonly ResultWrite[]): Promise<number> {
  return run(client, S.store, records.map((r) => r.key), [ttl, ...records.map((r) => r.payload)]);
}

/** `take-tokens-n.lua`: take `n` tokens from every bucket or none; 0, or the ms until they could be taken. */
export function takeTokens(client: ScriptClient, keys: { buckets: readonly string[] }, args: { n: number; limits: ReadonlyArray<{ rate: number; capacity: number }> }): Promise<number> {
  return run(client, S.takeTokens, keys.buckets, [args.n, ...args.limits.flatMap((l) => [l.rate, l.capacity])]);
}

/**
 * `replay-sync-n.lua`: settle `settled` for `settleTtlMs` and claim `claimed`
 * for `holder` (`H<id>`) for `leaseMs`; `stale` pairs (claim index, from 1;
 * dead holder) may be replaced. Per claim: 0 claimed, 1 settled, or the
 * live holder.
 */
export function replaySync(
  client: ScriptClient,
  keys: { settled: readonly string[]; claimed: readonly string[] },
  args: { settleTtlMs: number; holder: string; leaseMs: number; stale: ReadonlyArray<readonly [number, string]> },
): Promise<Array<number | string>> {
  return run(client, S.replaySync, [...keys.settled, ...keys.claimed], [keys.settled.length, args.settleTtlMs, args.holder, args.leaseMs, ...args.stale.flat()]);
}

/** `replay-refresh-n.lua`: extend to `leaseMs` the leases `holder` still has on `nonces`; how many were extended. */
export function replayRefresh(client: ScriptClient, keys: { nonces: readonly string[] }, args: { holder: string; leaseMs: number }): Promise<number> {
  return run(client, S.replayRefresh, keys.nonces, [args.holder, args.leaseMs]);
}

/** celeriac beat's keys for one namespace (one hash slot: `{<ns>}`). */
export interface BeatKeys {
  lock: string;
  fence: string;
  entries: string;
}

/** `beat-acquire-2.lua`: take or extend the beat lease; `[1, token, expiresAt]` or `[0, holder, expiresAt]`. */
export function beatAcquire(client: ScriptClient, keys: BeatKeys, args: { holder: string; leaseMs: number }): Promise<[number, string, string]> {
  return run(client, S.beatAcquire, [keys.lock, keys.fence], [args.holder, args.leaseMs]);
}

/** `beat-release-1.lua`: release the beat lease if `holder` still has it under `token`; 1 when released. */
export function beatRelease(client: ScriptClient, keys: BeatKeys, args: { holder: string; token: number }): Promise<number> {
  return run(client, S.beatRelease, [keys.lock], [args.holder, String(args.token)]);
}

/**
 * `beat-claim-2+n.lua`: the fencing check and the record of one tick, and
 * with `push` the LPUSH of its task message, atomically; `['claimed', '1'|'0']`
 * (pushed or not), `['fenced']` or `['done', lastTick]`.
 */
export function beatClaim(
  client: ScriptClient,
  keys: BeatKeys,
  args: { token: number; entry: string; tick: number; taskId: string; skipped: number; pending?: string | undefined; push?: { key: string; envelope: string } | undefined },
): Promise<string[]> {
  const base = [String(args.token), args.entry, String(args.tick), args.taskId, args.skipped, args.push ? '' : (args.pending ?? '')];
  return args.push
    ? run(client, S.beatClaim, [keys.lock, keys.entries, args.push.key], [...base, args.push.envelope])
    : run(client, S.beatClaim, [keys.lock, keys.entries], base);
}

/** `beat-confirm-1.lua`: mark the publish of `tick` done if it is still the entry's last; 1 when marked. */
export function beatConfirm(client: ScriptClient, keys: BeatKeys, args: { entry: string; tick: number }): Promise<number> {
  return run(client, S.beatConfirm, [keys.entries], [args.entry, String(args.tick)]);
}

/** `expiring-set-add-1.lua`: add `entries` (id, expiry ms) to the expiring id set `set`, keeping at most `max`. */
export function expiringSetAdd(client: ScriptClient, keys: { set: string }, args: { now: number; max: number; entries: ReadonlyArray<readonly [string, number]> }): Promise<number> {
  return run(client, S.expiringSetAdd, [keys.set], [args.now, args.max, ...args.entries.flatMap(([id, until]) => [id, Math.round(until)])]);
}

/**
 * `chord-part-3.lua`: add one chord header part (Celery's native join); the
 * parts, in header order, when this one completed the header, else null.
 * Run as a Buffer command: parts may be msgpack.
 */
export function chordPart(client: ScriptClient, keys: { join: string; extra: string; size: string }, args: { entry: Buffer; score: number | '+inf'; ttl: number }): Promise<Buffer[] | null> {
  command(client, S.chordPart);
  const fn = (client as unknown as Record<string, Runner>)[`${S.chordPart.command}Buffer`]!;
  return fn.call(client, 3, keys.join, keys.extra, keys.size, args.entry, args.score, args.ttl) as Promise<Buffer[] | null>;
}
