/**
 * A CLI io whose stdout and stderr are captured, for running
 * `runAuditCommand` in-process.
 */
import { PassThrough } from 'node:stream';

export function captureIo(cwd: string): { io: { stdout: PassThrough; stderr: PassThrough; env: Record<string, string>; cwd: string }; out(): string; err(): string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  return { io: { stdout, stderr, env: {}, cwd }, out: () => out, err: () => err };
}
