// A JavaScript run on standby (warm_node.py): node is started as
//   node FLAGS --require THIS_FILE [standby] CHANNEL
// already confined, and this preload, which node runs before it loads the main module, waits
// on the socket CHANNEL for the go: the JSON list [main file, ...arguments]. Node then goes on
// as if it had been started as `node FLAGS MAIN_FILE ARGUMENTS`: its own Module.runMain loads
// the main file as the entry point, CommonJS or ES module. What still differs from a cold run
// is listed in warm_node.py's docstring.
'use strict';

// A Worker loads the preloads again: it is no run on standby, and must start as it would.
if (require('worker_threads').isMainThread) {
  standBy(Number(process.argv[2]));
}

function standBy(channel) {
  const fs = require('fs');
  const path = require('path');
  const Module = require('module');

  // 1. Say it is ready, then wait. No go (end of file) means the run was let go unused.
  fs.writeSync(channel, 'ready');
  const message = Buffer.alloc(1 << 20);
  const size = fs.readSync(channel, message);
  if (size === 0) {
    process.exit(0);
  }
  const [file, ...args] = JSON.parse(message.toString('utf8', 0, size));
  fs.closeSync(channel);

  // 2. What a cold node has: its argv, and the flags it was started with, without this file
  //    (a child started with child_process.fork() gets process.execArgv).
  process.argv.splice(1, Infinity, path.resolve(file), ...args);
  process.execArgv.splice(process.execArgv.indexOf('--require'), 2);
  delete require.cache[__filename];

  // 3. Node calls Module.runMain(entry) with the placeholder next: have it load the main file.
  //    Bound, it adds no frame to the stack; bound to a function that holds it as `runMain`,
  //    it shows in stack traces as a cold run's does: `Function.executeUserEntryPoint [as
  //    runMain]`.
  const holder = function () {};
  holder.runMain = Module.runMain;
  Module.runMain = Module.runMain.bind(holder, process.argv[1]);
}
