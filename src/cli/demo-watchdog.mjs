// Preloaded (node --import) into the worker processes `celeriac demo` starts.
// The demo talks to them over an IPC channel it never uses for messages: when
// the demo process goes away — even killed by SIGKILL, when it cannot clean
// up — the channel closes and the worker shuts itself down (warm: tasks not
// yet started go back to the queue), so no orphan keeps running.
if (process.channel) {
  // The channel must not keep the worker alive once it has stopped.
  process.channel.unref();
  process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
}
