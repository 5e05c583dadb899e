/**
 * The compose recipe (deploy/compose/compose.yaml) run without Docker: each
 * service becomes a local process on loopback with the service's own
 * `command`, `environment`, secrets and configs, as the uid the service names
 * when this process is root.
 *
 * What stands in for the container:
 * - Its filesystem: a container path `P` of service `svc` is `<root>/fs/<svc>P`
 *   (`/run/secrets/ca_cert`, `/etc/rabbitmq/conf.d/20-admin.conf`, volumes),
 *   except `/app/…`, the image's application, shared by every service.
 * - `secrets:` and `configs:`: the files the service lists, copied (a bind
 *   mount would share one file; the copy keeps owner and mode, so the
 *   ownership step of deploy/README.md is what the processes meet). Text that
 *   names a container path (`ssl_ca_certs=/run/secrets/ca_cert` in a URL) is
 *   rewritten to the service's own copy, and the broker ports to the free
 *   ports this run uses: the only edits.
 * - The network: everything binds 127.0.0.1; containers' DNS names are
 *   replaced by `localhost`, a name the README's certificates carry.
 */
import { execFile, spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { sleep } from './services.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DEPLOY = join(ROOT, 'deploy');
export const CLI = join(ROOT, 'bin', 'celeriac.mjs');

export interface ComposeService {
  command?: string[];
  environment?: Record<string, string>;
  user?: string;
  secrets?: Array<string | { source: string; target?: string }>;
  configs?: Array<string | { source: string; target?: string }>;
  volumes?: string[];
  healthcheck?: { test: string[] };
}

export interface ComposeFile {
  services: Record<string, ComposeService>;
  secrets: Record<string, { file: string }>;
  configs: Record<string, { file: string }>;
}

/** deploy/compose/compose.yaml, merge keys (`<<: *celeriac`) applied. */
export function loadCompose(): ComposeFile {
  return parse(readFileSync(join(DEPLOY, 'compose', 'compose.yaml'), 'utf8'), { merge: true }) as ComposeFile;
}

/** The fenced ```sh blocks of the README section whose heading starts with `heading`. */
export function readmeShellBlocks(heading: string): string[] {
  const readme = readFileSync(join(DEPLOY, 'README.md'), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith(heading));
  if (!section) throw new Error(`deploy/README.md has no section "## ${heading}…"`);
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

/** Replace `from` by `to` in `text`, failing when `from` is absent (the README changed: the test must notice). */
export function substitute(text: string, from: string, to: string): string {
  if (!text.includes(from)) throw new Error(`expected ${JSON.stringify(from)} in the README's steps`);
  return text.split(from).join(to);
}

/** uid:gid of a compose `user:` ("10001:10001"). */
export function composeUser(svc: ComposeService): { uid: number; gid: number } {
  const [uid, gid] = (svc.user ?? '0:0').split(':').map(Number);
  return { uid: uid!, gid: gid ?? uid! };
}

/** True when this process may run services as their own uids (root, as Docker is). */
export const AS_SERVICE_USERS = process.getuid?.() === 0;

/** The spawn identity of a service: its compose uid when root, else ours. */
export function spawnIdentity(svc: ComposeService): Pick<SpawnOptions, 'uid' | 'gid'> {
  return AS_SERVICE_USERS ? composeUser(svc) : {};
}

/** Files of one service's container, under `<root>/fs/<name>`. */
export interface ServiceFs {
  name: string;
  svc: ComposeService;
  /** Host path of a container path. */
  path(containerPath: string): string;
  /** Rewrite every container path (`/run/secrets/…`, `/app/…`, volumes) in `text`. */
  rewrite(text: string): string;
}

export interface MountOptions {
  root: string;
  /** The app's directory standing in for the image's `/app`. */
  appDir: string;
  compose: ComposeFile;
  /** Directory of compose.yaml (relative `file:` paths resolve here). */
  composeDir: string;
  /** Extra text rewrites for mounted files (ports). */
  rewrites?: Array<[string, string]>;
}

/**
 * Lay out a service's filesystem: its secrets and configs copied with owner
 * and mode (contents rewritten to this layout), its named volumes as
 * directories owned by the service's user.
 */
export function mountService(name: string, opts: MountOptions): ServiceFs {
  const svc = opts.compose.services[name];
  if (!svc) throw new Error(`compose.yaml has no service ${name}`);
  const base = join(opts.root, 'fs', name);
  const path = (p: string): string => (p.startsWith('/app/') ? join(opts.appDir, p.slice('/app/'.length)) : join(base, p));
  const volumeTargets = (svc.volumes ?? []).map((v) => v.split(':')[1]!).filter(Boolean);
  const rewrite = (text: string): string => {
    if (volumeTargets.includes(text)) return path(text); // `--dir /data`
    let out = text.replace(/\/run\/secrets\//g, `${path('/run/secrets')}/`).replace(/\/app\//g, `${opts.appDir}/`);
    for (const t of volumeTargets) out = out.split(`${t}/`).join(`${path(t)}/`);
    for (const [from, to] of opts.rewrites ?? []) out = out.split(from).join(to);
    return out;
  };
  mkdirSync(base, { recursive: true, mode: 0o755 });
  const id = composeUser(svc);
  const mount = (file: string, target: string, rewriteText: boolean): void => {
    const dest = path(target);
    mkdirSync(dirname(dest), { recursive: true, mode: 0o755 });
    const st = statSync(file);
    if (rewriteText && readFileSync(file, 'utf8').match(/\/run\/secrets\/|localhost:\d+/)) {
      writeFileSync(dest, rewrite(readFileSync(file, 'utf8')), { mode: 0o600 });
    } else {
      copyFileSync(file, dest);
    }
    chmodSync(dest, st.mode & 0o7777);
    if (AS_SERVICE_USERS) chownSync(dest, st.uid, st.gid);
  };
  for (const s of svc.secrets ?? []) {
    const source = typeof s === 'string' ? s : s.source;
    const target = typeof s === 'string' || !s.target ? `/run/secrets/${source}` : s.target.startsWith('/') ? s.target : `/run/secrets/${s.target}`;
    const file = opts.compose.secrets[source]?.file;
    if (!file) throw new Error(`service ${name} uses secret ${source}, which compose.yaml does not define`);
    // A PEM key or certificate never names a container path; URL files and configs may.
    mount(join(opts.composeDir, file), target, true);
  }
  for (const c of svc.configs ?? []) {
    const source = typeof c === 'string' ? c : c.source;
    const target = typeof c === 'string' || !c.target ? `/${source}` : c.target;
    const file = opts.compose.configs[source]?.file;
    if (!file) throw new Error(`service ${name} uses config ${source}, which compose.yaml does not define`);
    mount(join(opts.composeDir, file), target, true);
  }
  for (const t of volumeTargets) {
    mkdirSync(dirname(path(t)), { recursive: true, mode: 0o755 });
    mkdirSync(path(t), { mode: 0o700 });
    if (AS_SERVICE_USERS) chownSync(path(t), id.uid, id.gid);
  }
  return { name, svc, path, rewrite };
}

/** A process started for a service, stopped by PID. */
export interface ServiceProcess {
  name: string;
  pid: number;
  proc: ChildProcess;
  output(): string;
  /** Parsed JSON log lines (CELERIAC_LOG_FORMAT=json). */
  logs(): Array<Record<string, unknown>>;
  /** Resolves with the exit code (or the signal that ended it). */
  exited: Promise<number | NodeJS.Signals | null>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with how it ended. */
  stop(graceMs?: number): Promise<number | NodeJS.Signals | null>;
}

export function startProcess(name: string, cmd: string, args: string[], options: SpawnOptions): ServiceProcess {
  const proc = spawn(cmd, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | NodeJS.Signals | null>((r) => proc.once('exit', (code, signal) => r(code ?? signal)));
  return {
    name,
    pid: proc.pid!,
    proc,
    output: () => out,
    logs: () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .flatMap((l) => {
          try {
            return [JSON.parse(l) as Record<string, unknown>];
          } catch {
            return [];
          }
        }),
    exited,
    async stop(graceMs = 10_000) {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
        clearTimeout(timer);
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      }
      return exited;
    },
  };
}

/** Wait until `check` passes, failing early when `p` exits (with its output). */
export async function waitForService(p: ServiceProcess, check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (p.proc.exitCode !== null || p.proc.signalCode !== null) throw new Error(`${p.name} exited (${p.proc.exitCode ?? p.proc.signalCode}) before ${what}:\n${p.output().slice(-3000)}`);
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`${p.name}: no ${what} after ${timeoutMs} ms:\n${p.output().slice(-3000)}`);
    await sleep(100);
  }
}

/** Run a shell script with `sh -e` (stdin given), as `identity`; throws with its output on failure. */
export function runShell(script: string, options: { cwd: string; env: NodeJS.ProcessEnv; input?: string; identity?: Pick<SpawnOptions, 'uid' | 'gid'> }): string {
  const r = spawnSync('sh', ['-e', '-c', script], { cwd: options.cwd, env: options.env, input: options.input ?? '', encoding: 'utf8', timeout: 120_000, ...options.identity });
  if (r.status !== 0) throw new Error(`shell steps failed (exit ${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}\n--- script ---\n${script}`);
  return `${r.stdout}${r.stderr}`;
}

/** Directory of the real RabbitMQ scripts (Debian wraps /usr/sbin's in `su rabbitmq`). */
export function rabbitmqBin(): string | undefined {
  if (existsSync('/usr/lib/rabbitmq/bin/rabbitmq-server')) return '/usr/lib/rabbitmq/bin';
  const r = spawnSync('sh', ['-c', 'command -v rabbitmq-server'], { encoding: 'utf8' });
  return r.status === 0 ? dirname(r.stdout.trim()) : undefined;
}

/** The rabbitmq service's node: its own name and ports, its conf.d from the recipe, its data volume. */
export interface RecipeRabbit {
  nodename: string;
  /** Environment for rabbitmq-server and rabbitmqctl (node name, config, HOME with the cookie). */
  env: NodeJS.ProcessEnv;
  /** `rabbitmqctl` as the service's user (like `docker compose exec rabbitmq rabbitmqctl …`). */
  ctl(args: string[]): Promise<string>;
  /** Run a shell script inside the "container": as its user, with its environment. */
  exec(script: string): { status: number | null; output: string };
  process: ServiceProcess;
  /** PID of the beam process (its pid file). */
  pid(): number | undefined;
  stop(): Promise<void>;
}

/**
 * Start the rabbitmq service on `fs`: conf.d is the service's mounted
 * `/etc/rabbitmq/conf.d` (the recipe's 10-tls.conf and the secret
 * 20-admin.conf), HOME and data in its `/var/lib/rabbitmq` volume; `baseConf`
 * holds what only this machine needs (a small disk, file logs).
 */
export async function startRecipeRabbit(fs: ServiceFs, options: { distPort: number; baseConf: string }): Promise<RecipeRabbit> {
  const bin = rabbitmqBin();
  if (!bin) throw new Error('rabbitmq-server is not installed');
  const data = fs.path('/var/lib/rabbitmq');
  const id = spawnIdentity(fs.svc);
  const base = fs.path('/etc/rabbitmq/rabbitmq.conf');
  writeFileSync(base, options.baseConf, { mode: 0o644 });
  writeFileSync(join(data, 'rabbitmq-env.conf'), '');
  writeFileSync(join(data, 'enabled_plugins'), '[].\n');
  mkdirSync(join(data, 'log'), { recursive: true });
  if (AS_SERVICE_USERS) for (const f of ['rabbitmq-env.conf', 'enabled_plugins', 'log']) chownSync(join(data, f), id.uid!, id.gid!);
  const nodename = `celeriac-recipe-${randomBytes(4).toString('hex')}@localhost`;
  const env: NodeJS.ProcessEnv = {
    PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    LANG: 'C.UTF-8',
    HOME: data,
    RABBITMQ_NODENAME: nodename,
    RABBITMQ_DIST_PORT: String(options.distPort),
    RABBITMQ_CONFIG_FILE: base,
    RABBITMQ_CONFIG_FILES: fs.path('/etc/rabbitmq/conf.d'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(data, 'advanced.config'),
    RABBITMQ_CONF_ENV_FILE: join(data, 'rabbitmq-env.conf'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(data, 'enabled_plugins'),
    RABBITMQ_MNESIA_BASE: join(data, 'mnesia'),
    RABBITMQ_LOG_BASE: join(data, 'log'),
    RABBITMQ_FEATURE_FLAGS_FILE: join(data, 'feature_flags'),
    RABBITMQ_PID_FILE: join(data, 'pid'),
    ERL_EPMD_ADDRESS: '127.0.0.1',
  };
  const ctl = (args: string[]): Promise<string> =>
    new Promise((resolve, reject) => {
      execFile(join(bin, 'rabbitmqctl'), args, { env, cwd: data, timeout: 60_000, ...id }, (err, stdout, stderr) => {
        if (err) reject(new Error(`rabbitmqctl ${args.join(' ')} failed: ${stderr || err.message}`));
        else resolve(stdout);
      });
    });
  const proc = startProcess('rabbitmq', join(bin, 'rabbitmq-server'), [], { env, cwd: data, ...id });
  const beamPid = (): number | undefined => {
    try {
      const n = Number(readFileSync(join(data, 'pid'), 'utf8').trim());
      return Number.isInteger(n) && n > 0 ? n : undefined;
    } catch {
      return undefined;
    }
  };
  const alive = (p: number | undefined): boolean => {
    if (!p) return false;
    try {
      process.kill(p, 0);
      return true;
    } catch {
      return false;
    }
  };
  // If the test process dies without cleaning up, do not leave a broker running.
  const onExit = (): void => {
    const p = beamPid();
    if (alive(p)) process.kill(p!, 'SIGKILL');
  };
  process.once('exit', onExit);
  const deadline = Date.now() + 90_000;
  await waitForService(
    proc,
    async () => {
      try {
        await ctl(['await_startup', '-t', '2']);
        return true;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        return false;
      }
    },
    95_000,
    'RabbitMQ start-up',
  );
  return {
    nodename,
    env,
    ctl,
    process: proc,
    pid: beamPid,
    exec(script) {
      const r = spawnSync('sh', [], { input: script, env, cwd: data, encoding: 'utf8', timeout: 120_000, ...id });
      return { status: r.status, output: `${r.stdout}${r.stderr}` };
    },
    async stop() {
      process.off('exit', onExit);
      const p = beamPid();
      await ctl(['stop', join(data, 'pid')]).catch(() => undefined);
      const until = Date.now() + 15_000;
      while (alive(p) && Date.now() < until) await sleep(100);
      if (alive(p)) process.kill(p!, 'SIGKILL');
      await proc.stop(2000);
    },
  };
}

/** Remove the run's files, even those the README's steps made read-only. */
export function removeTree(root: string): void {
  spawnSync('chmod', ['-R', 'u+rwX', root], { stdio: 'ignore' });
  rmSync(root, { recursive: true, force: true });
}
