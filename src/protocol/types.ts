/**
 * Transport-neutral shapes of Celery's task message (protocol v2).
 * Field names follow the wire, so they stay snake_case here.
 */

/**
 * What json and msgpack carry between languages: the JSON data model, with
 * integers beyond ±2^53 as `bigint` (exact, never rounded; Python's ints).
 */
export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | { [key: string]: JsonValue };

/** The 16 headers Celery 5.2.6 writes, plus the optional ones later versions add. */
export interface TaskHeaders {
  lang: string;
  task: string;
  id: string;
  shadow: string | null;
  eta: string | null;
  expires: string | null;
  group: string | null;
  group_index: number | null;
  retries: number;
  /** `[hard, soft]` seconds: this order, whatever Celery's docs say. */
  timelimit: [number | null, number | null];
  root_id: string;
  parent_id: string | null;
  argsrepr: string;
  kwargsrepr: string;
  origin: string;
  ignore_result: boolean;
  [extra: string]: unknown;
}

/** AMQP basic properties as Celery fills them (unknown keys are tolerated). */
export interface MessageProperties {
  correlation_id?: string;
  reply_to?: string;
  delivery_mode?: number;
  priority?: number;
  /** Per-message TTL in milliseconds, as a string (AMQP). */
  expiration?: string;
  [extra: string]: unknown;
}

/**
 * A message as every broker adapter moves it: headers and properties as
 * values, the body as the serialized bytes (never base64 here).
 */
export interface WireMessage {
  headers: Record<string, unknown>;
  properties: MessageProperties;
  contentType: string;
  contentEncoding: string;
  body: Buffer;
}

/** A serialized canvas element (`celery.canvas.Signature` as a dict). */
export interface SignatureDict {
  task: string;
  args: JsonValue[];
  kwargs: Record<string, JsonValue>;
  options: Record<string, JsonValue>;
  subtask_type: string | null;
  immutable: boolean;
  chord_size?: number | null;
  [extra: string]: unknown;
}

/** The third element of the body. */
export interface Embed {
  callbacks: SignatureDict[] | null;
  errbacks: SignatureDict[] | null;
  chain: SignatureDict[] | null;
  chord: SignatureDict | null;
}

/** Decoded body `[args, kwargs, embed]`. */
export type TaskBody = [JsonValue[], Record<string, JsonValue>, Embed];
