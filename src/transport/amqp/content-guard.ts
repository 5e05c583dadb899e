/**
 * A size limit on the messages amqplib assembles (issue 20 #7). amqplib
 * collects every content frame of a delivery and concatenates them before
 * the application sees anything, so a 100 MB message costs 100 MB (twice,
 * during the concat) however small the body limit is. The content header
 * announces the body size before the first body byte arrives; this guard
 * reads it there.
 *
 * On a channel given a limit (`limitContent`), a message whose announced
 * size is over the limit is not assembled: amqplib receives a content
 * header that announces only the first {@link OVERSIZED_HEAD} bytes, those
 * bytes (copied out of the frame), and nothing more; the rest of the body
 * frames are counted and dropped here, one frame (at most `frame_max`) at
 * a time. The delivery reaches the consumer with its real properties and
 * headers (so its task id), the head of the body, and the announced size
 * under {@link OVERSIZED} on its properties; the consumer dead-letters it
 * with the reason. Nothing of it is refused at the frame level, so the
 * channel and the connection stay up and the messages behind it are
 * served.
 *
 * The patch is on amqplib's `Channel.prototype.acceptMessageFrame` (every
 * message frame of every channel passes through it: deliveries, returns
 * and `basic.get`); a channel without a limit is untouched. If amqplib's
 * layout changes the guard reports itself inactive, and the consumer's
 * post-assembly check still refuses the message (bounded by the broker's
 * `max_message_size` only).
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
// The field-table guard must be installed before amqplib's defs.js loads (channel.js loads it).
import './field-table.ts';

/** Bytes of an oversized body that are kept (for the dead-letter record). */
export const OVERSIZED_HEAD = 1024;

/** Set on the properties of a delivery that was not assembled: the body size its content header announced. */
export const OVERSIZED: unique symbol = Symbol('celeriac.oversizedBody');

const LIMIT: unique symbol = Symbol('celeriac.contentLimit');
const SKIP: unique symbol = Symbol('celeriac.contentSkip');

interface Frame {
  id?: number;
  channel?: number;
  size?: number;
  fields?: Record<string | symbol, unknown>;
  content?: Buffer;
}

interface Skipping {
  /** Body bytes still to arrive for the message being dropped. */
  remaining: number;
  /** Head bytes still to be handed to amqplib. */
  head: number;
}

interface GuardedChannel {
  [LIMIT]?: number;
  [SKIP]?: Skipping;
}

let state: 'active' | 'inactive' | undefined;
let basicProperties = -1;

/**
 * Patch amqplib's message assembly (idempotent). Returns whether the guard
 * is active.
 */
export function installContentGuard(): boolean {
  if (state) return state === 'active';
  state = 'inactive';
  try {
    const require = createRequire(import.meta.url);
    const lib = join(dirname(require.resolve('amqplib')), 'lib');
    const defs = require(join(lib, 'defs.js')) as { BasicProperties?: unknown };
    const mod = require(join(lib, 'channel.js')) as { Channel?: { prototype: Record<string, unknown> } };
    const proto = mod.Channel?.prototype;
    const original = proto?.acceptMessageFrame;
    if (typeof defs.BasicProperties !== 'number' || !proto || typeof original !== 'function') return false;
    basicProperties = defs.BasicProperties;
    const accept = original as (this: unknown, f: Frame) => unknown;
    proto.acceptMessageFrame = function guardedAcceptMessageFrame(this: GuardedChannel, f: Frame): unknown {
      const skip = this[SKIP];
      if (skip !== undefined) return skipFrame(this, skip, f, accept);
      const limit = this[LIMIT];
      if (limit !== undefined && f.id === basicProperties && typeof f.size === 'number' && f.size > limit && f.fields) {
        const head = Math.min(OVERSIZED_HEAD, f.size);
        f.fields[OVERSIZED] = f.size;
        this[SKIP] = { remaining: f.size, head };
        return accept.call(this, { ...f, size: head });
      }
      return accept.call(this, f);
    };
    state = 'active';
    return true;
  } catch {
    return false;
  }
}

/** One frame while an oversized message is being dropped: hand amqplib the head, count and drop the rest. */
function skipFrame(ch: GuardedChannel, skip: Skipping, f: Frame, accept: (this: unknown, f: Frame) => unknown): unknown {
  const content = f.id === undefined ? f.content : undefined;
  if (content === undefined) {
    // Not a body frame where one was due: let amqplib's own state machine report the protocol error.
    ch[SKIP] = undefined;
    return accept.call(ch, f);
  }
  skip.remaining -= content.length;
  if (skip.remaining <= 0) ch[SKIP] = undefined;
  if (skip.head > 0) {
    const n = Math.min(skip.head, content.length);
    skip.head -= n;
    // A copy: a view would keep the whole received chunk alive for as long as the dead-letter record.
    return accept.call(ch, { ...f, content: Buffer.from(content.subarray(0, n)) });
  }
  if (skip.remaining < 0) {
    // More body than announced: amqplib's own check closes the channel, as without the guard.
    return accept.call(ch, f);
  }
  return undefined;
}

/**
 * Give `channel` (an amqplib channel) a body-size limit: a message larger
 * than `maxBytes` arrives as described in the module comment.
 */
export function limitContent(channel: object, maxBytes: number): void {
  (channel as GuardedChannel)[LIMIT] = maxBytes;
}

/** The announced body size of a delivery that was not assembled, if it was not. */
export function oversizedSize(properties: object | undefined): number | undefined {
  const v = (properties as Record<symbol, unknown> | undefined)?.[OVERSIZED];
  return typeof v === 'number' ? v : undefined;
}

/** Whether the guard is in place (see `installContentGuard`). */
export function contentGuardActive(): boolean {
  return state === 'active';
}

installContentGuard();
