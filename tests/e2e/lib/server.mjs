// Start a server under test on a free 127.0.0.1 port, wait until it accepts TCP, stop it.
//
// The command comes from an environment variable holding a whole command line (split on
// spaces), e.g. SOCKEYE_EIO_ECHO="node tests/e2e/ref/eio_echo.mjs"; without it the C example
// under $top_builddir (default: the repository root) is used. A missing executable is an
// error (the tests fail, they do not skip).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** True when the tests run against the reference Node servers (sockeye-only tests skip). */
export const REF = process.env.SOCKEYE_REF === '1';

/** Reason string for t.skip / { skip } on sockeye-only tests. */
export const REF_SKIP = REF ? 'sockeye-only behaviour (SOCKEYE_REF=1)' : false;

const TOP_BUILDDIR = path.resolve(process.env.top_builddir || REPO_ROOT);

// A relative path in a command from the environment is taken relative to the current
// directory, else to the repository root (so the same variable works from both).
function resolveWord(word) {
    if (!word.includes('/') || path.isAbsolute(word)) return word;
    const fromCwd = path.resolve(word);
    if (existsSync(fromCwd)) return fromCwd;
    const fromRoot = path.resolve(REPO_ROOT, word);
    if (existsSync(fromRoot)) return fromRoot;
    return fromCwd;
}

/**
 * The argv of the server command named by `envVar`, or `$top_builddir/<defaultRel>`.
 * Throws with a clear message when the executable does not exist.
 */
export function serverCommand(envVar, defaultRel) {
    const spec = process.env[envVar];
    const argv = spec
        ? spec.split(' ').filter((w) => w.length > 0).map(resolveWord)
        : [path.join(TOP_BUILDDIR, defaultRel)];
    if (argv.length === 0) throw new Error(`${envVar} is set but empty`);
    const exe = argv[0];
    if (exe.includes('/') && !existsSync(exe)) {
        throw new Error(
            `server executable not found: ${exe}\n` +
                `Build it first (make), or set ${envVar} to a command, e.g. ` +
                `${envVar}="node tests/e2e/ref/${path.basename(defaultRel)}.mjs" with SOCKEYE_REF=1.`,
        );
    }
    return argv;
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function tryConnect(port) {
    return new Promise((resolve) => {
        const sock = net.connect({ port, host: '127.0.0.1' });
        sock.once('connect', () => {
            sock.destroy();
            resolve(true);
        });
        sock.once('error', () => {
            sock.destroy();
            resolve(false);
        });
    });
}

const OUTPUT_KEEP = 64 * 1024;

class ServerProcess {
    constructor(argv, port) {
        this.argv = argv;
        this.port = port;
        this.output = '';
        this.exit = null; // { code, signal } once exited
        this.stopping = false;
        this.proc = spawn(argv[0], argv.slice(1), {
            stdio: ['ignore', 'pipe', 'pipe'],
            env: process.env,
        });
        this.pid = this.proc.pid;
        const keep = (chunk) => {
            if (process.env.SOCKEYE_E2E_VERBOSE) process.stderr.write(chunk);
            this.output += chunk.toString('utf8');
            if (this.output.length > OUTPUT_KEEP) this.output = this.output.slice(-OUTPUT_KEEP);
        };
        this.proc.stdout.on('data', keep);
        this.proc.stderr.on('data', keep);
        this.exited = new Promise((resolve) => {
            this.proc.once('exit', (code, signal) => {
                this.exit = { code, signal };
                resolve(this.exit);
            });
            this.proc.once('error', (err) => {
                this.exit = { code: null, signal: null, error: err };
                resolve(this.exit);
            });
        });
    }

    describe() {
        const status = this.exit
            ? this.exit.error
                ? `failed to start: ${this.exit.error.message}`
                : `exited with code ${this.exit.code} signal ${this.exit.signal}`
            : `running (pid ${this.pid})`;
        return `server \`${this.argv.join(' ')}\` on port ${this.port}: ${status}\n--- server output (tail) ---\n${this.output}`;
    }

    /** Throws (with the server's output) if the server is no longer running. */
    assertAlive() {
        if (this.exit) throw new Error(`server died during the test\n${this.describe()}`);
    }

    async waitReady(timeoutMs) {
        const deadline = Date.now() + timeoutMs;
        while (Date.now() < deadline) {
            if (this.exit) return false;
            if (await tryConnect(this.port)) return true;
            await sleep(20);
        }
        throw new Error(`server did not accept TCP within ${timeoutMs} ms\n${this.describe()}`);
    }

    /** Bytes of resident memory of the server process (Linux /proc), or null. */
    async rssBytes() {
        const { readFile } = await import('node:fs/promises');
        try {
            const status = await readFile(`/proc/${this.pid}/status`, 'utf8');
            const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
            return m ? Number(m[1]) * 1024 : null;
        } catch {
            return null;
        }
    }

    /**
     * SIGTERM, wait for the exit (SIGKILL after `graceMs`). Throws if the server had
     * crashed, exited with a non-zero code, or did not exit in time; the message carries
     * the server's output. Idempotent.
     */
    async stop(graceMs = 5000) {
        if (this.stopping) return this.stopResult;
        this.stopping = true;
        const diedEarly = this.exit !== null;
        if (!diedEarly) this.proc.kill('SIGTERM');
        let timer;
        const timedOut = await Promise.race([
            this.exited.then(() => false),
            new Promise((r) => (timer = setTimeout(() => r(true), graceMs))),
        ]);
        clearTimeout(timer);
        if (timedOut) {
            this.proc.kill('SIGKILL');
            await this.exited;
            throw new Error(`server did not exit within ${graceMs} ms of SIGTERM\n${this.describe()}`);
        }
        this.stopResult = this.exit;
        if (diedEarly) throw new Error(`server exited before it was stopped\n${this.describe()}`);
        const { code, signal } = this.exit;
        const clean = code === 0 || (code === null && signal === 'SIGTERM');
        if (!clean) throw new Error(`server did not exit cleanly on SIGTERM\n${this.describe()}`);
        return this.exit;
    }
}

/**
 * Start the server named by env var `envVar` (default `$top_builddir/<defaultRel>`) with
 * `--port <free port>` plus `args`; resolve once it accepts TCP on 127.0.0.1.
 * Returns a ServerProcess: { port, pid, output, assertAlive(), rssBytes(), stop() }.
 */
export async function startServer({ envVar, defaultRel, args = [], readyTimeoutMs = 10000 }) {
    const argv = serverCommand(envVar, defaultRel);
    let last;
    for (let attempt = 0; attempt < 3; attempt++) {
        const port = await freePort();
        const srv = new ServerProcess([...argv, '--port', String(port), ...args], port);
        if (await srv.waitReady(readyTimeoutMs)) return srv;
        last = srv; // exited before accepting: maybe the port was taken meanwhile, retry
    }
    throw new Error(`server failed to start\n${last.describe()}`);
}

/** startServer for the Engine.IO echo example (SOCKEYE_EIO_ECHO, examples/eio_echo). */
export function startEioEcho(args = [], extra = {}) {
    return startServer({ envVar: 'SOCKEYE_EIO_ECHO', defaultRel: 'examples/eio_echo', args, ...extra });
}

/** startServer for the Socket.IO echo example (SOCKEYE_SIO_ECHO, examples/echo_server). */
export function startSioEcho(args = [], extra = {}) {
    return startServer({ envVar: 'SOCKEYE_SIO_ECHO', defaultRel: 'examples/echo_server', args, ...extra });
}

/** argv of the Engine.IO echo server; throws (test failure) when the executable is missing. */
export function eioEchoCommand() {
    return serverCommand('SOCKEYE_EIO_ECHO', 'examples/eio_echo');
}

/** argv of the Socket.IO echo server; throws (test failure) when the executable is missing. */
export function sioEchoCommand() {
    return serverCommand('SOCKEYE_SIO_ECHO', 'examples/echo_server');
}
