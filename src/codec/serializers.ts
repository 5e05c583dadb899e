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
  encode(value: unknown): Buffer;
  decode(bytes: Uint8Array, limits?: DecodeLimits): unknown;
}

export const JSON_SERIALIZER: Serializer = Object.freeze({
  name: 'json',
  contentType: 'application/json',
  contentEncoding: 'utf-8',
  encode: encodeJson,
  decode: decodeJson,
});

export const MSGPACK_SERIALIZER: Serializer = Object.freeze({
  name: 'msgpack',
  contentType: 'application/x-msgpack',
  contentEncoding: 'binary',
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

/**
 * Decode a body by its content type, honouring the accept list (content
 * types, as produced by `contentTypeOf`); `compression` is the message's
 * `compression` header (kombu's), undone first under the inflation cap.
 * Throws `ContentDisallowedError` or `DecodeError`.
 */
export function decodeByContentType(
  bytes: Uint8Array,
  contentType: string,
  accept: ReadonlySet<string>,
  limits: DecodeLimits = DEFAULT_DECODE_LIMITS,
  compression?: unknown,
): unknown {
  if (!accept.has(contentType)) throw new ContentDisallowedError(contentType);
  const s = BY_CONTENT_TYPE.get(contentType);
  if (!s) throw new DecodeError(`no decoder for content type ${JSON.stringify(contentType)}`, { code: 'ERR_NO_DECODER' });
  if (compression !== undefined && compression !== null) bytes = decompressBody(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), compression, limits);
  return s.decode(bytes, limits);
}
