"""The drivers of a session's long-lived interpreters: Python and Node.js keep their state.

A session of another language keeps only its workdir: each call runs the program as a fresh
run does. For Python and JavaScript the session's supervisor starts one interpreter, confined
exactly as a run's program is, that runs a small driver given here as source (`-c` / `-e`, so
that nothing needs to be readable on disk). The driver waits for calls and runs each one's
main file in one persistent namespace, like the cells of a notebook.

The protocol, the same for both:
- descriptor REQUESTS (a pipe from the supervisor): one JSON line per call, `{"file": main
  file's path, "name": its name, "stdin": a file holding the call's stdin, "argv": the
  program's arguments}`. The
  driver opens the stdin file as descriptor 0 and removes it.
- descriptor REPLIES (a pipe to the supervisor): one JSON line when the call is over,
  `{"exit": status}`.
- descriptors 1 and 2 are pipes to the supervisor, which copies what arrives during a call to
  that call's own stdout and stderr. Both runtimes write to pipes synchronously, so once the
  reply is written everything the call printed is in the pipes, and the supervisor drains
  them before it answers.
Between calls the supervisor stops the interpreter (SIGSTOP): nothing of a session runs while
no call is in flight.

Known shortcoming: REPLIES is open in the interpreter, so the code can write a reply itself
and end its call early; the session's later calls may then read replies one call late. It
harms only that session, within its limits (README, "Sessions").

What a call does not behave like a script in, written where the model can read it (README,
"Sessions"):
- Python: the code runs with `exec` in the session's `__main__`; an uncaught exception prints
  its traceback and makes the exit status 1; `SystemExit` (`sys.exit(n)`, `exit()`) ends the
  call with its status and the session lives on. A traceback through a function defined in
  an earlier call shows the lines of the current main file. Threads a call starts keep
  running in later calls.
- JavaScript: each call runs as a classic script (`vm.runInThisContext`): top-level
  `const`, `let`, `class` and functions persist, and declaring the same `const` or `let`
  again is a SyntaxError (assign to it, or use `var` or `globalThis`). `import`/`export`
  cannot be used (use `require`). Code with a top-level `await` runs inside an async
  function, so its own declarations do not persist: put what must stay on `globalThis`. A
  call ends as a script would, when nothing it started is pending (timers, promises);
  `process.exit(n)` ends the call with status n and keeps the interpreter, but callbacks
  already scheduled still run first. `process.stdin` works in the first call that uses it
  only; `fs.readFileSync(0)` reads each call's stdin.
"""

from __future__ import annotations

# Languages whose interpreter lives as long as the session.
PERSISTENT = ("python", "javascript")

_PYTHON = r"""
import io, json, linecache, os, sys, types

def _serve(requests, replies):
    main = types.ModuleType("__main__")
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    calls = io.open(requests, "rb", buffering=0, closefd=False)
    buffered = io.BufferedReader(calls)
    stdout, stderr = sys.stdout, sys.stderr
    while True:
        line = buffered.readline()
        if not line:
            return
        request = json.loads(line)
        fd = os.open(request["stdin"], os.O_RDONLY | os.O_NOFOLLOW)
        os.dup2(fd, 0)
        os.close(fd)
        os.unlink(request["stdin"])
        sys.stdin = io.TextIOWrapper(io.open(0, "rb", closefd=False), encoding="utf-8")
        sys.stdout, sys.stderr = stdout, stderr
        sys.argv = [request["name"], *request["argv"]]
        main.__file__ = request["file"]
        status = _run(request["file"], main)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.write(replies, (json.dumps({"exit": status}) + "\n").encode())

def _run(path, main):
    try:
        with open(path, "rb") as source:
            code = compile(source.read(), path, "exec", dont_inherit=True)
        linecache.checkcache(path)
        exec(code, main.__dict__)
    except SystemExit as request:
        return _exit_status(request.code)
    except BaseException as error:
        traceback = error.__traceback__
        while traceback is not None and traceback.tb_frame.f_code.co_filename == "<string>":
            traceback = traceback.tb_next
        # The default hook prints the exception's own traceback, not the one it is given.
        error.__traceback__ = traceback
        try:
            sys.excepthook(type(error), error, traceback)
        except SystemExit as request:
            return _exit_status(request.code)
        except BaseException:
            sys.__excepthook__(type(error), error, traceback)
        return 1
    return 0

def _exit_status(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1

_serve(int(sys.argv[1]), int(sys.argv[2]))
"""

_JAVASCRIPT = r"""
'use strict';
(() => {
  const fs = require('fs');
  const vm = require('vm');
  const requests = Number(process.argv[1]);
  const replies = Number(process.argv[2]);
  globalThis.require = require;
  class ExitRequest { constructor(code) { this.code = code; } }
  let status = 0;
  let pending = '';
  process.exit = (code) => { throw new ExitRequest(code ?? process.exitCode ?? 0); };

  // Below the call's own frames are the driver's (vm, [eval], the immediate that ran the
  // call): a script's error shows none of them.
  function trimmed(stack) {
    const lines = stack.split('\n');
    const driver = lines.findIndex(
      (line) => /^ +at (Script\.runInThisContext|new Script) \(node:vm:/.test(line));
    return (driver < 0 ? lines : lines.slice(0, driver)).join('\n');
  }

  function report(error) {
    if (error instanceof ExitRequest) { status = Number(error.code) & 0xff; return; }
    const text = error && error.stack
      ? trimmed(String(error.stack)) : 'Uncaught ' + require('util').inspect(error);
    fs.writeSync(2, text + '\n');
    status = 1;
  }
  process.on('uncaughtException', report);

  function readRequest() {
    const buffer = Buffer.alloc(65536);
    while (!pending.includes('\n')) {
      let count;
      try { count = fs.readSync(requests, buffer, 0, buffer.length, null); }
      catch (error) {
        if (error.code === 'EAGAIN' || error.code === 'EINTR') continue;
        throw error;
      }
      if (count === 0) return null;
      pending += buffer.toString('utf8', 0, count);
    }
    const at = pending.indexOf('\n');
    const line = pending.slice(0, at);
    pending = pending.slice(at + 1);
    return JSON.parse(line);
  }

  function compile(source, file) {
    try {
      return new vm.Script(source, { filename: file });
    } catch (error) {
      const awaits = error instanceof SyntaxError && /await is only valid/.test(error.message);
      if (!awaits) throw error;
      return new vm.Script('(async () => {' + source + '\n})()', { filename: file });
    }
  }

  function nextCall() {
    const request = readRequest();
    if (request === null) { process.reallyExit(0); }
    fs.closeSync(0);
    fs.openSync(request.stdin, 'r');
    fs.unlinkSync(request.stdin);
    process.argv = [process.argv0, request.file, ...request.argv];
    status = 0;
    process.exitCode = undefined;
    try {
      const result = compile(fs.readFileSync(request.file, 'utf8'), request.file)
        .runInThisContext();
      if (result instanceof Promise) result.catch(report);
    } catch (error) {
      report(error);
    }
  }

  function finishCall() {
    if (status === 0 && process.exitCode) status = Number(process.exitCode) & 0xff;
    fs.closeSync(0);
    fs.openSync('/dev/null', 'r');
    fs.writeSync(replies, JSON.stringify({ exit: status }) + '\n');
  }

  // 'beforeExit' comes when nothing the call started is pending: where a script would end.
  // The next call is scheduled, not run here: a listener that schedules nothing lets the
  // process exit.
  process.on('beforeExit', () => { finishCall(); setImmediate(nextCall); });
  nextCall();
})();
"""


def command(language_id: str, run: list[str], requests: int, replies: int) -> list[str] | None:
    """The argv of a session's interpreter for `language_id`, or None if it keeps no state.

    `run` is the language's own command for a run (its flags are kept: Node's heap size);
    `requests` and `replies` are the descriptor numbers the interpreter inherits.
    """
    if language_id == "python":
        return [run[0], "-u", "-B", "-c", _PYTHON, str(requests), str(replies)]
    if language_id == "javascript":
        flags = [arg for arg in run[1:-1] if arg.startswith("--")]
        return [run[0], *flags, "-e", _JAVASCRIPT, str(requests), str(replies)]
    return None


def persistent(language_id: str) -> bool:
    """Whether a session of this language keeps its interpreter's state between calls."""
    return language_id in PERSISTENT
