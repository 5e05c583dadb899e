/**
 * kombu's body compression. A compressed message carries the header
 * `compression` holding the compressor's MIME type; the body is compressed
 * after serialization (and after Celery's `auth` signing), and
 * content_type/content_encoding still describe the serialization.
 *
 * kombu 5.2.4 registers `zlib` and `gzip` as aliases of
 * `application/x-gzip`, whose data is **zlib** format (RFC 1950, Python's
 * `zlib.compress`), and `bzip2`/`bzip` as `application/x-bz2`; brotli, lzma
 * and zstd only when their Python modules are installed.
 *
 * Celeriac inflates `application/x-gzip` with Node's zlib under a hard cap:
 * at most `maxBytes`, and at most `maxInflateRatio` times the compressed
 * size (64 KiB always allowed). zlib stops as soon as its output passes the
 * cap (within one 16 KiB chunk), so a bomb is refused without being
 * inflated. Every other compression is refused (the message is
 * dead-lettered with a reason that names it). bzip2 in particular: Node has
 * none; the pure-JavaScript decoders on npm are hand ports with little
 * upkeep, and the reference library compiled to WebAssembly
 * (@foxglove/wasm-bz2) initialises only asynchronously, which the
 * synchronous decode path cannot wait for. Python senders can use zlib.
 */
import { deflateSync, inflateSync } from 'node:zlib';
import { DecodeError, ValidationError } from '../errors.ts';
import { DEFAULT_DECODE_LIMITS, type DecodeLimits } from './limits.ts';

/** The message header that names the compression. */
export const COMPRESSION_HEADER = 'compression';

/** kombu's MIME type for `zlib`/`gzip` (zlib-format data). */
export const ZLIB_CONTENT_TYPE = 'application/x-gzip';

/** Compression names Celeriac can send (kombu's aliases of application/x-gzip). */
export type CompressionName = 'zlib' | 'gzip';

/** kombu's other registered compressions, refused by name with a clear reason. */
const KNOWN_UNSUPPORTED: ReadonlyMap<string, string> = new Map([
  ['application/x-bz2', 'bzip2'],
  ['application/x-lzma', 'lzma'],
  ['application/x-brotli', 'brotli'],
  ['application/zstd', 'zstd'],
]);

/** Inflated output always allowed, whatever the ratio (small bodies compress well). */
const RATIO_FLOOR_BYTES = 64 * 1024;

/** The MIME type of a send option value; throws `ValidationError` for anything but zlib/gzip. */
export function compressionContentType(name: unknown): string {
  if (name === 'zlib' || name === 'gzip') return ZLIB_CONTENT_TYPE;
  const hint = name === 'bzip2' || name === 'bzip' ? 'Celeriac does not support bzip2; use zlib' : "use 'zlib' (kombu's application/x-gzip)";
  throw new ValidationError(`compression ${JSON.stringify(name)} is not supported`, { field: 'compression', hint });
}

/** Compress a serialized body as kombu's `zlib` does (zlib format). */
export function compressBody(body: Uint8Array, name: CompressionName): Buffer {
  compressionContentType(name);
  return deflateSync(body);
}

/** The largest inflated size accepted for a body of `compressedLength` bytes. */
export function inflateCap(compressedLength: number, limits: DecodeLimits = DEFAULT_DECODE_LIMITS): number {
  const ratio = limits.maxInflateRatio ?? DEFAULT_DECODE_LIMITS.maxInflateRatio!;
  return Math.min(limits.maxBytes, Math.max(RATIO_FLOOR_BYTES, compressedLength * ratio));
}

/**
 * Undo the compression named by a message's `compression` header (absent or
 * null: the body as it is). Throws `DecodeError` for an unsupported or
 * malformed header, corrupt data, or a body that would inflate past the
 * cap — before inflating past it.
 */
export function decompressBody(body: Buffer, header: unknown, limits: DecodeLimits = DEFAULT_DECODE_LIMITS): Buffer {
  if (header === undefined || header === null) return body;
  if (header !== ZLIB_CONTENT_TYPE) {
    if (typeof header !== 'string') throw new DecodeError(`the compression header is a ${typeof header}, not a MIME type`, { code: 'ERR_COMPRESSION' });
    const known = KNOWN_UNSUPPORTED.get(header);
    throw new DecodeError(
      known ? `compression ${header} (${known}) is not supported` : `unknown compression ${JSON.stringify(header.slice(0, 64))}`,
      { code: 'ERR_COMPRESSION', hint: `send with compression='zlib' (${ZLIB_CONTENT_TYPE})` },
    );
  }
  const cap = inflateCap(body.length, limits);
  try {
    return inflateSync(body, { maxOutputLength: cap });
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new DecodeError(`compressed body of ${body.length} bytes inflates beyond ${cap} bytes (limits: maxBytes ${limits.maxBytes}, maxInflateRatio ${limits.maxInflateRatio ?? DEFAULT_DECODE_LIMITS.maxInflateRatio})`, {
        code: 'ERR_TOO_LARGE',
      });
    }
    throw new DecodeError(`compressed body is not valid zlib data: ${(err as Error).message}`, { code: 'ERR_COMPRESSION' });
  }
}
