// Preloaded with NODE_OPTIONS=--import=<this file> (Node refuses --cpu-prof
// in NODE_OPTIONS, so forked children would not be profiled otherwise):
// samples the whole process with the inspector and writes
// <BENCH_CPU_PROF_DIR>/<role>-<pid>.cpuprofile when it exits. The role is
// "child" for processes forked with an IPC channel, else "main".
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.BENCH_CPU_PROF_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: Number(process.env.BENCH_CPU_PROF_INTERVAL_US ?? 1000) });
  session.post('Profiler.start');
  const role = typeof process.send === 'function' ? 'child' : 'main';
  let written = false;
  const write = () => {
    if (written) return;
    written = true;
    // A same-thread session answers synchronously, so this works in an 'exit' handler.
    session.post('Profiler.stop', (err, result) => {
      if (!err && result?.profile) writeFileSync(join(dir, `${role}-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  };
  process.on('exit', write);
}
