/**
 * CLI plumbing: output streams, exit codes, and error reporting that
 * passes everything through redaction.
 */
import { redactAll } from '../config/redact.ts';
import { CeleriacError } from '../errors.ts';

export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
}

/** Exit codes shared by every command. */
export const Exit = {
  OK: 0,
  /** The task failed or was revoked. */
  TASK_FAILED: 1,
  /** Bad command line. */
  USAGE: 2,
  /** Waiting for a result timed out. */
  TIMEOUT: 3,
  /** Configuration refused, or broker/backend unreachable. */
  ERROR: 4,
} as const;

export function defaultIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() };
}

/** Write a line (redacted) to a stream. */
export function println(stream: NodeJS.WritableStream, text = ''): void {
  stream.write(`${redactAll(text)}\n`);
}

/** Report an error on stderr, redacted, with its hint; returns the exit code for it. */
export function reportError(io: CliIo, err: unknown): number {
  if (err instanceof CeleriacError) {
    println(io.stderr, `error: ${err.message}`);
    // An error of the user's code (an app module that throws at import) wrapped by ours: show where it was thrown.
    const cause = err.cause;
    if (cause instanceof Error && !(cause instanceof CeleriacError)) println(io.stderr, `\n${cause.stack ?? `${cause.name}: ${cause.message}`}`);
    if (err.code === 'ERR_TIMEOUT') return Exit.TIMEOUT;
    return Exit.ERROR;
  }
  const e = err as Error;
  println(io.stderr, `error: ${e?.message ?? String(err)}`);
  return Exit.ERROR;
}

/** A usage error with the command's help. */
export class UsageError extends Error {}
