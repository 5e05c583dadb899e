/**
 * Typed errors. Every error says what went wrong and what to do about it,
 * and never carries a secret: messages that mention a URL must pass it
 * through `redactUrl` first.
 */

/** Base class of every error Celeriac throws on purpose. */
export class CeleriacError extends Error {
  /** Stable machine-readable code, e.g. `ERR_DECODE`. */
  readonly code: string;
  /** What the user can do about it. */
  readonly hint: string | undefined;

  constructor(code: string, message: string, options?: { hint?: string; cause?: unknown }) {
    super(options?.hint ? `${message} — ${options.hint}` : message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = new.target.name;
    this.code = code;
    this.hint = options?.hint;
  }
}

/** Invalid configuration (a wrong option, an unparsable URL, a refused insecure setting). */
export class ConfigError extends CeleriacError {
  constructor(message: string, options?: { hint?: string; cause?: unknown; code?: string }) {
    super(options?.code ?? 'ERR_CONFIG', message, options);
  }
}

/** A message body or envelope could not be decoded (malformed, too large, too deep, wrong type). */
export class DecodeError extends CeleriacError {
  /** Short reason, suitable for logs and dead-letter records. */
  readonly reason: string;
  constructor(reason: string, options?: { hint?: string; cause?: unknown; code?: string }) {
    super(options?.code ?? 'ERR_DECODE', reason, options);
    this.reason = reason;
  }
}

/** A message's content type is not in `acceptContent`. */
export class ContentDisallowedError extends DecodeError {
  readonly contentType: string;
  constructor(contentType: string) {
    super(`content type ${JSON.stringify(contentType)} is not accepted`, {
      code: 'ERR_CONTENT_DISALLOWED',
      hint: 'send json or msgpack, or add the type to acceptContent if it is one of json, msgpack, auth',
    });
    this.contentType = contentType;
  }
}

/** The message is not a Celery task message Celeriac can run. */
export class ProtocolError extends DecodeError {
  constructor(reason: string, options?: { hint?: string; cause?: unknown }) {
    super(reason, { ...options, code: 'ERR_PROTOCOL' });
  }
}

/** A connection to a broker or backend failed. The message names the host, never the password. */
export class ConnectionError extends CeleriacError {
  constructor(message: string, options?: { hint?: string; cause?: unknown; code?: string }) {
    super(options?.code ?? 'ERR_CONNECTION', message, options);
  }
}

/** Waiting for a result took longer than the timeout. */
export class TimeoutError extends CeleriacError {
  constructor(message: string, options?: { hint?: string }) {
    super('ERR_TIMEOUT', message, options);
  }
}

/** The task's arguments did not match its declared parameters or schema. */
export class ValidationError extends CeleriacError {
  /** Path of the offending field, e.g. `args[1]` or `kwargs.name`. */
  readonly field: string | undefined;
  constructor(message: string, options?: { field?: string; hint?: string; cause?: unknown }) {
    super('ERR_VALIDATION', message, options);
    this.field = options?.field;
  }
}

/** The target queue is at its configured maximum length. */
export class QueueFullError extends CeleriacError {
  readonly queue: string;
  readonly length: number;
  readonly limit: number;
  constructor(queue: string, length: number, limit: number) {
    super('ERR_QUEUE_FULL', `queue ${JSON.stringify(queue)} holds ${length} messages, at its limit of ${limit}`, {
      hint: 'retry later, add workers, or raise maxQueueLength for this queue',
    });
    this.queue = queue;
    this.length = length;
    this.limit = limit;
  }
}

/** The client exceeded a submission rate limit. */
export class RateLimitedError extends CeleriacError {
  readonly retryAfterMs: number;
  constructor(what: string, retryAfterMs: number) {
    super('ERR_RATE_LIMITED', `${what} is over its submission rate limit`, {
      hint: `wait ${Math.ceil(retryAfterMs)} ms before sending again, or raise the limit`,
    });
    this.retryAfterMs = retryAfterMs;
  }
}

/** Operation on a closed app, broker, backend or worker. */
export class ClosedError extends CeleriacError {
  constructor(what: string) {
    super('ERR_CLOSED', `${what} is closed`, { hint: 'create a new one; closed instances cannot be reused' });
  }
}

/**
 * A task failed remotely (in a Celeriac or a Python worker). Carries the
 * exception's type name, module and arguments exactly as stored; nothing
 * named in the record is ever resolved, imported or executed.
 */
export class RemoteTaskError extends CeleriacError {
  readonly taskId: string;
  readonly excType: string;
  readonly excModule: string | null;
  readonly excMessage: unknown[];
  readonly remoteTraceback: string | null;
  /** The task state that carried the error: FAILURE, REVOKED or RETRY. */
  readonly state: string;

  constructor(init: {
    taskId: string;
    excType: string;
    excModule: string | null;
    excMessage: unknown[];
    traceback: string | null;
    state: string;
  }) {
    const text = init.excMessage.map((m) => (typeof m === 'string' ? m : safeJson(m))).join(', ');
    super('ERR_REMOTE_TASK', `task ${init.taskId} ${init.state === 'REVOKED' ? 'was revoked' : 'failed'}: ${init.excType}(${text})`);
    this.taskId = init.taskId;
    this.excType = init.excType;
    this.excModule = init.excModule;
    this.excMessage = init.excMessage;
    this.remoteTraceback = init.traceback;
    this.state = init.state;
  }
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}
