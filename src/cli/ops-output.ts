/**
 * Output helpers of the operator's commands (inspect, control, status,
 * purge, dlq): aligned tables, colours only on a terminal (and never with
 * NO_COLOR), and a confirmation prompt for destructive commands.
 */
import { createInterface } from 'node:readline/promises';
import { println, type CliIo } from './io.ts';

/** True when the stream is a terminal. */
export function isTty(stream: NodeJS.WritableStream): boolean {
  return (stream as { isTTY?: boolean }).isTTY === true;
}

const CODES = { green: 32, red: 31, yellow: 33, dim: 2, bold: 1 } as const;

/** `text` in a colour when `stream` is a terminal and NO_COLOR is unset. */
export function paint(io: CliIo, stream: NodeJS.WritableStream, colour: keyof typeof CODES, text: string): string {
  if (!isTty(stream) || io.env.NO_COLOR !== undefined) return text;
  return `\u001b[${CODES[colour]}m${text}\u001b[0m`;
}

/** Rows as aligned columns under a header line. */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** Seconds from a `--timeout` flag, as ms. */
export function timeoutMs(value: string | undefined, fallbackS: number): number {
  if (value === undefined) return fallbackS * 1000;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error('--timeout must be a positive number of seconds');
  return n * 1000;
}

/** Input for `confirm` (tests pass their own). */
export interface ConfirmInput {
  stdin?: NodeJS.ReadableStream & { isTTY?: boolean };
}

/**
 * Ask before a destructive step. `--yes` skips the question; without a
 * terminal to ask on, the answer is no (a script must say --yes).
 */
export async function confirm(io: CliIo & ConfirmInput, question: string, yes: boolean | undefined): Promise<boolean> {
  if (yes) return true;
  const stdin = io.stdin ?? process.stdin;
  if (!(stdin as { isTTY?: boolean }).isTTY) {
    println(io.stderr, `error: ${question} Refused: no terminal to confirm on; pass --yes to confirm in a script.`);
    return false;
  }
  const rl = createInterface({ input: stdin, output: io.stderr });
  try {
    const answer = await rl.question(`${question} Type "yes" to go on: `);
    return answer.trim().toLowerCase() === 'yes';
  } finally {
    rl.close();
  }
}

/** Compact JSON of a value on one line, for table cells. */
export function cell(value: unknown, max = 80): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
