/**
 * `celeriac events`: watch the events of Celeriac and Python Celery workers
 * and clients. On a terminal, a live view redrawn in place; otherwise one
 * plain line per event; `--dump` as `celery events --dump`; `--json` as
 * JSON lines. Ctrl-C (or SIGTERM) ends it cleanly.
 */
import { parseArgs } from 'node:util';
import type { App } from '../client/app.ts';
import { createEventReceiver } from '../client/events/receiver.ts';
import { createEventState } from '../client/events/state.ts';
import { redactUrl } from '../config/redact.ts';
import { createDumper, jsonLine, plainLine, renderView } from './events-format.ts';
import { applyConnectionFlags, CONNECTION_FLAGS, CONNECTION_HELP } from './flags.ts';
import { Exit, println, reportError, type CliIo } from './io.ts';
import { appFromArgs } from './load-app.ts';

export const EVENTS_HELP = `Usage: celeriac events [options]

Watch Celery events (from Celeriac and Python Celery workers and clients).
Workers send task events when started with -E (Celery: -E / worker_send_task_events);
clients send task-sent with taskSendSentEvent (Celery: task_send_sent_event).

On a terminal: a live view of workers (online/offline by heartbeat, active,
processed, load), task counts by state and per task name with the rate of
finished tasks per second, and the last tasks. Otherwise: one line per event.

Options:
      --dump                print each event as \`celery events --dump\` does
      --json                print each event as one JSON object per line
      --last <n>            live view: how many recent tasks to show (default 15)
      --exchange <name>     event exchange (default celeryev)
  -k, --binding-key <key>   routing-key pattern to receive, repeatable
                            (default '#': everything; e.g. 'worker.#')
  -A, --app <module>        module exporting the app (for its settings)
${CONNECTION_HELP}
  -h, --help                show this help

Events are untrusted input: malformed ones (bad encoding, wrong types,
oversized, prototype keys) are skipped and counted, never printed raw.

Exit codes: 0 after Ctrl-C, 2 usage error, 4 configuration or connection error.`;

/** How often the live view is redrawn, ms. */
const REDRAW_MS = 1000;

export async function runEventsCommand(argv: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        dump: { type: 'boolean' },
        json: { type: 'boolean' },
        last: { type: 'string' },
        exchange: { type: 'string' },
        'binding-key': { type: 'string', short: 'k', multiple: true },
        app: { type: 'string', short: 'A' },
        help: { type: 'boolean', short: 'h' },
        ...CONNECTION_FLAGS,
      },
      allowPositionals: false,
      strict: true,
    });
  } catch (err) {
    println(io.stderr, `error: ${(err as Error).message}\n\n${EVENTS_HELP}`);
    return Exit.USAGE;
  }
  const { values } = parsed;
  if (values.help) {
    println(io.stdout, EVENTS_HELP);
    return Exit.OK;
  }
  if (values.dump && values.json) {
    println(io.stderr, `error: --dump and --json are exclusive\n\n${EVENTS_HELP}`);
    return Exit.USAGE;
  }
  const last = values.last === undefined ? 15 : Number(values.last);
  if (!Number.isInteger(last) || last < 0 || last > 1000) {
    println(io.stderr, `error: --last must be an integer from 0 to 1000\n\n${EVENTS_HELP}`);
    return Exit.USAGE;
  }

  const controller = new AbortController();
  const stop = (): void => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const out = io.stdout as NodeJS.WritableStream & { isTTY?: boolean; columns?: number; rows?: number };
  // A closed pipe (\`| head\`) ends the command instead of throwing.
  out.once?.('error', stop);
  const live = !values.dump && !values.json && out.isTTY === true;
  let app: App | undefined;
  let redraw: NodeJS.Timeout | undefined;
  try {
    applyConnectionFlags(values, io);
    ({ app } = await appFromArgs(values.app, io.cwd));
    const source = redactUrl(app.settings.brokerUrl ?? 'the configured broker');
    const receiver = createEventReceiver({
      app,
      signal: controller.signal,
      ...(values.exchange ? { exchange: values.exchange } : {}),
      ...(values['binding-key']?.length ? { bindingKeys: values['binding-key'] } : {}),
      onError: (err) => println(io.stderr, `-> ${err.message} (reconnecting)`),
    });
    await receiver.ready;
    if (values.dump) println(io.stdout, '-> evdump: starting capture...');
    else println(io.stderr, `-> listening for events on ${values.exchange ?? 'celeryev'} at ${source} (Ctrl-C to quit)`);

    if (live) {
      const state = createEventState();
      // Alternate screen, cursor hidden: the terminal is given back as it was on exit.
      out.write('\x1b[?1049h\x1b[?25l');
      const draw = (): void => {
        const lines = renderView(state, Date.now() / 1000, { source, ...receiver.stats, lastTasks: last, width: out.columns || 120 });
        const rows = out.rows || 50;
        out.write(`\x1b[H${lines.slice(0, rows).map((l) => `${l}\x1b[K`).join('\n')}\x1b[J`);
      };
      draw();
      redraw = setInterval(draw, REDRAW_MS);
      try {
        for await (const ev of receiver) state.apply(ev);
      } finally {
        clearInterval(redraw);
        out.write('\x1b[?25h\x1b[?1049l');
      }
      println(io.stderr, `-> ${receiver.stats.received} events, ${receiver.stats.malformed} malformed`);
      return Exit.OK;
    }

    const format = values.json ? jsonLine : values.dump ? createDumper() : plainLine;
    for await (const ev of receiver) println(out, format(ev));
    println(io.stderr, `-> ${receiver.stats.received} events, ${receiver.stats.malformed} malformed${receiver.stats.dropped ? `, ${receiver.stats.dropped} dropped` : ''}`);
    return Exit.OK;
  } catch (err) {
    return reportError(io, err);
  } finally {
    clearInterval(redraw);
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
    out.removeListener?.('error', stop);
    await app?.close();
  }
}
