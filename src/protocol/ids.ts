import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';

/** A new task/delivery id: a lowercase dashed UUID4, as Celery uses. */
export function newId(): string {
  return randomUUID();
}

let cachedOrigin: string | undefined;

/** Node name of this client process, Celery style: `gen<pid>@<hostname>`. */
export function clientOrigin(): string {
  cachedOrigin ??= `gen${process.pid}@${hostname()}`;
  return cachedOrigin;
}

/** Default worker node name: `celeriac<pid>@<hostname>` unless given. */
export function defaultNodeName(): string {
  return `celeriac${process.pid}@${hostname()}`;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for the dashed 36-character UUID form. */
export function isUuid(text: string): boolean {
  return UUID_RE.test(text);
}
