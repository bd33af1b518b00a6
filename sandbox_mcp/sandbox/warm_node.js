// A JavaScript run on standby (warm_node.py): node is started as
//   node FLAGS --require THIS_FILE [standby] CHANNEL
// already confined, and this preload, which node runs before it loads the main module, waits
// on the socket CHANNEL for the go: the JSON list [main file, ...arguments]. Node then goes on
// as if it had been started as `node FLAGS MAIN_FILE ARGUMENTS`: its own Module.runMain loads
// the main file as the entry point, CommonJS or ES module. What still differs from a cold run
// is listed in warm_node.py's docstring.
'use strict';

// A Worker thread loads the preloads again, with an argv of its own: it is no run on standby,
// and must start as it would.
const path = require('path');
if (process.argv.length === 3 && path.basename(process.argv[1]) === '[standby]') {
  standBy(Number(process.argv[2]));
}

function standBy(channel) {
  const fs = require('fs');
  const Module = module.constructor;

  // 1. Load now what a program's first output to its stdout or stderr (pipes) loads: node's
  //    streams and net. That halves the time left between the go and the end of a run that
  //    prints; `process.moduleLoadList` shows them loaded before the main module.
  require('net');

  // 2. Say it is ready, then wait. No go (end of file) means the run was let go unused.
  fs.writeSync(channel, 'ready');
  const message = Buffer.alloc(1 << 20);
  const size = fs.readSync(channel, message);
  if (size === 0) {
    process.exit(0);
  }
  const [file, ...args] = JSON.parse(message.toString('utf8', 0, size));
  fs.closeSync(channel);

  // 3. What a cold node has: its argv, and the flags it was started with, without this file
  //    (a child started with child_process.fork() gets process.execArgv).
  process.argv.splice(1, Infinity, path.resolve(file), ...args);
  process.execArgv.splice(process.execArgv.indexOf('--require'), 2);
  delete require.cache[__filename];

  // 4. Node calls Module.runMain(entry) with the placeholder next: have it load the main file.
  //    Bound, it adds no frame to the stack; bound to a function that holds it as `runMain`,
  //    it shows in stack traces as a cold run's does: `Function.executeUserEntryPoint [as
  //    runMain]`.
  const holder = function () {};
  holder.runMain = Module.runMain;
  Module.runMain = Module.runMain.bind(holder, process.argv[1]);
}
