/**
 * The `celeriac` command: dispatches to one module per subcommand.
 */
import { defaultIo, Exit, println, type CliIo } from './io.ts';

const COMMANDS: Record<string, { summary: string; load: () => Promise<(argv: string[], io: CliIo) => Promise<number>> }> = {
  worker: { summary: 'run a worker for an app module', load: async () => (await import('./worker.ts')).runWorkerCommand },
  send: { summary: 'send a task by name', load: async () => (await import('./send.ts')).runSendCommand },
  result: { summary: "print a task's result", load: async () => (await import('./send.ts')).runResultCommand },
  secrets: { summary: 'generate strong secrets, keys and certificates', load: async () => (await import('./secrets.ts')).runSecretsCommand },
  demo: { summary: 'run workers and sample tasks on the embedded SQLite broker (no server needed)', load: async () => (await import('./demo.ts')).runDemoCommand },
  events: { summary: 'watch worker and task events (live view, --dump, --json)', load: async () => (await import('./events.ts')).runEventsCommand },
  inspect: { summary: 'ask running workers (Celeriac and Python) a question: ping, stats, active, scheduled, registered, …', load: async () => (await import('./inspect.ts')).runInspectCommand },
  control: { summary: 'send workers a command: revoke, rate_limit, shutdown, pool_grow, add_consumer/cancel_consumer, …', load: async () => (await import('./inspect.ts')).runControlCommand },
  status: { summary: 'list the workers online', load: async () => (await import('./inspect.ts')).runStatusCommand },
  purge: { summary: 'delete every waiting message of queues (asks first)', load: async () => (await import('./dlq.ts')).runPurgeCommand },
  dlq: { summary: 'dead letters: list, show, redrive, drop', load: async () => (await import('./dlq.ts')).runDlqCommand },
  beat: { summary: 'send periodic tasks on schedule, one leader across instances (beat status: last and next runs)', load: async () => (await import('./beat.ts')).runBeatCommand },
  audit: { summary: 'check a Celeriac or Python Celery deployment against every mitigation (CEL-001 … CEL-022)', load: async () => (await import('./audit.ts')).runAuditCommand },
  dashboard: { summary: 'the web monitor (HTTPS, login required): workers, tasks, queues, charts, actions by role, audit log', load: async () => (await import('./dashboard.ts')).runDashboardCommand },
};

/** Register an extra subcommand (used by modules that add demo, secrets, audit, …). */
export function registerCommand(name: string, summary: string, load: () => Promise<(argv: string[], io: CliIo) => Promise<number>>): void {
  COMMANDS[name] = { summary, load };
}

function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return `Usage: celeriac <command> [options]

A Celery-compatible task queue for Node.js, secure by default.

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  .join('\n')}

Options:
  -V, --version   print the version
  -h, --help      show this help

Run "celeriac <command> --help" for a command's options.`;
}

/** Run the CLI; returns the exit code. */
export async function main(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '-h' || command === '--help' || command === 'help') {
    println(io.stdout, help());
    return command ? Exit.OK : Exit.USAGE;
  }
  if (command === '--version' || command === '-V') {
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    println(io.stdout, pkg.version);
    return Exit.OK;
  }
  // Own keys only: `celeriac constructor` or `celeriac __proto__` are unknown commands, not Object.prototype's.
  const entry = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (!entry) {
    println(io.stderr, `error: unknown command ${JSON.stringify(command)}\n\n${help()}`);
    return Exit.USAGE;
  }
  const run = await entry.load();
  return run(rest, io);
}
