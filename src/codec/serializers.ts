/**
 * The serializers Celeriac speaks. Only data formats exist here: there is
 * no pickle, yaml or any other format that can name code to run.
 */
import { ContentDisallowedError, DecodeError } from '../errors.ts';
import { decompressBody } from './compression.ts';
import { decodeJson, encodeJson } from './json.ts';
import { DEFAULT_DECODE_LIMITS, type DecodeLimits } from './limits.ts';
import { decodeMsgpack, encodeMsgpack } from './msgpack.ts';

/** Names accepted in `taskSerializer`, `resultSerializer` and `acceptContent`. */
export type SerializerName = 'json' | 'msgpack';

export interface Serializer {
  readonly name: SerializerName;
  readonly contentType: string;
  readonly contentEncoding: string;
  /** content-encoding values that mean this serializer's bytes (lower case), as kombu reads them. */
  readonly contentEncodings: readonly string[];
  encode(value: unknown): Buffer;
  decode(bytes: Uint8Array, limits?: DecodeLimits): unknown;
}

export const JSON_SERIALIZER: Serializer = Object.freeze({
  name: 'json',
  contentType: 'application/json',
  contentEncoding: 'utf-8',
  contentEncodings: ['utf-8', 'utf8'],
  encode: encodeJson,
  decode: decodeJson,
});

export const MSGPACK_SERIALIZER: Serializer = Object.freeze({
  name: 'msgpack',
  contentType: 'application/x-msgpack',
  contentEncoding: 'binary',
  // kombu passes 'binary' and 'ascii-8bit' bodies to the decoder untouched.
  contentEncodings: ['binary', 'ascii-8bit'],
  encode: encodeMsgpack,
  decode: decodeMsgpack,
});

const BY_NAME: ReadonlyMap<string, Serializer> = new Map([
  ['json', JSON_SERIALIZER],
  ['msgpack', MSGPACK_SERIALIZER],
]);

const BY_CONTENT_TYPE: ReadonlyMap<string, Serializer> = new Map([
  ['application/json', JSON_SERIALIZER],
  ['application/x-msgpack', MSGPACK_SERIALIZER],
  ['application/msgpack', MSGPACK_SERIALIZER],
]);

/** Content type of the signing (`auth`) serializer. */
export const AUTH_CONTENT_TYPE = 'application/data';

/** Look a serializer up by name; `undefined` for anything not json/msgpack. */
export function serializerByName(name: string): Serializer | undefined {
  return BY_NAME.get(name);
}

/** Content type for an `acceptContent` entry (a name or a MIME type). */
export function contentTypeOf(entry: string): string {
  if (entry === 'auth') return AUTH_CONTENT_TYPE;
  return BY_NAME.get(entry)?.contentType ?? entry;
}

/** What a message says about its body besides the content type. */
export interface BodyFraming {
  /** The `compression` header (kombu's), undone first under the inflation cap. */
  compression?: unknown;
  /** The message's content-encoding: must be one the serializer defines (checked when given). */
  contentEncoding?: unknown;
}

/**
 * Decode a body by its content type, honouring the accept list (content
 * types, as produced by `contentTypeOf`). Throws `ContentDisallowedError` or
 * `DecodeError`.
 */
export function decodeByContentType(
  bytes: Uint8Array,
  contentType: string,
  accept: ReadonlySet<string>,
  limits: DecodeLimits = DEFAULT_DECODE_LIMITS,
  framing?: BodyFraming,
): unknown {
  if (!accept.has(contentType)) throw new ContentDisallowedError(contentType);
  const s = BY_CONTENT_TYPE.get(contentType);
  if (!s) throw new DecodeError(`no decoder for content type ${JSON.stringify(contentType)}`, { code: 'ERR_NO_DECODER' });
  if (framing) {
    const ce = framing.contentEncoding;
    // kombu would decode the bytes with any codec named here (utf-16, latin-1, …): only the serializer's own is defined.
    if (ce !== undefined && (typeof ce !== 'string' || !s.contentEncodings.includes(ce.toLowerCase()))) {
      throw new DecodeError(`content-encoding ${JSON.stringify(typeof ce === 'string' ? ce.slice(0, 64) : ce)} is not defined for ${contentType} (expected ${s.contentEncoding})`, { code: 'ERR_CONTENT_ENCODING' });
    }
    const c = framing.compression;
    if (c !== undefined && c !== null) bytes = decompressBody(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), c, limits);
  }
  return s.decode(bytes, limits);
}
