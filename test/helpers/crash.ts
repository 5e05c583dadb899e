import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('./consume-and-die.ts', import.meta.url));

/** Run consume-and-die.ts against `url` and wait until it has been killed. */
export function consumeAndDie(url: string, queue: string, count: number, visibilityTimeout: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', SCRIPT, url, queue, String(count), String(visibilityTimeout)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 20_000);
    p.on('exit', (_code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL' && out.includes('taken')) resolve();
      else reject(new Error(`consume-and-die did not take ${count} messages (signal ${signal}, output ${out})`));
    });
  });
}
