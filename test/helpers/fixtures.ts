/** Golden vectors captured from Python Celery 5.2.6 (test/fixtures/celery-5.2.6). */
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const VECTORS_DIR = fileURLToPath(new URL('../fixtures/celery-5.2.6/', import.meta.url));

export function readVector<T = Record<string, unknown>>(relPath: string): T {
  return JSON.parse(readFileSync(VECTORS_DIR + relPath, 'utf8')) as T;
}

export function listVectors(dir: string): string[] {
  return readdirSync(VECTORS_DIR + dir).filter((f) => f.endsWith('.json')).map((f) => `${dir}/${f}`);
}

export interface ListEntry {
  redis_key: string;
  raw: string;
  body_hex: string | null;
}

/** Every list entry of every `redis/*.json` vector that has them. */
export function redisTaskEntries(): Array<{ file: string; entry: ListEntry }> {
  const out: Array<{ file: string; entry: ListEntry }> = [];
  for (const file of listVectors('redis')) {
    const v = readVector<{ redis_list_entries?: ListEntry[] }>(file);
    for (const entry of v.redis_list_entries ?? []) out.push({ file, entry });
  }
  return out;
}
