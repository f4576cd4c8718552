// The sockeye daemon (`sockeye -c FILE`) end to end: command line, config errors, --set and
// --port, static files and the client bundle, SIGHUP reload, SIGTERM drain, and the room
// policies of the config file (presence, history, max_members, join = "rules").
//
//   node --test tests/e2e/daemon.test.mjs
//
// The binary is $SOCKEYE_DAEMON (a command, split on spaces), else $top_builddir/sockeye
// (top_builddir defaults to the repository root). Everything here is sockeye-only: with
// SOCKEYE_REF=1 the whole file is skipped.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { REF_SKIP, REPO_ROOT, startServer } from './lib/server.mjs';
import { httpRequest } from './lib/raw.mjs';
import { Clients, barrier, once, sleep, within } from './lib/sio.mjs';

const T = { timeout: 15000 };
const ENV_VAR = 'SOCKEYE_DAEMON';
const TOP_BUILDDIR = path.resolve(process.env.top_builddir || REPO_ROOT);
const EXAMPLES = path.join(REPO_ROOT, 'examples');
const CHAT_PUBLIC = path.join(EXAMPLES, 'chat', 'public');
const BUNDLE_DIR = path.join(REPO_ROOT, 'tests', 'e2e', 'node_modules', 'socket.io-client', 'dist');

/** argv of the daemon; throws (a test failure, not a skip) when it does not exist. */
function daemonArgv() {
    const spec = process.env[ENV_VAR];
    const argv = spec ? spec.split(' ').filter((w) => w.length > 0) : [path.join(TOP_BUILDDIR, 'sockeye')];
    if (argv[0].includes('/') && !existsSync(argv[0])) {
        throw new Error(
            `sockeye daemon not found: ${argv[0]}\n` +
                `Build it first (make sockeye in the build directory), set top_builddir to the ` +
                `build directory, or set ${ENV_VAR} to its path.`,
        );
    }
    return argv;
}

/** Runs the daemon to completion: { code, signal, stdout, stderr }. Kills it after `ms`. */
function run(args, ms = 5000) {
    const argv = daemonArgv();
    return new Promise((resolve, reject) => {
        const p = spawn(argv[0], [...argv.slice(1), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        p.stdout.on('data', (d) => (stdout += d));
        p.stderr.on('data', (d) => (stderr += d));
        const timer = setTimeout(() => {
            p.kill('SIGKILL');
            reject(new Error(`sockeye ${args.join(' ')} did not exit within ${ms} ms\n${stderr}`));
        }, ms);
        p.on('error', (err) => {
            clearTimeout(timer);
            reject(err);
        });
        p.on('exit', (code, signal) => {
            clearTimeout(timer);
            resolve({ code, signal, stdout, stderr });
        });
    });
}

/** Starts the daemon on a free port with `-c conf` and `args`; resolves once it accepts TCP. */
function startDaemon(conf, args = []) {
    daemonArgv(); // the clear "not found" message first
    return startServer({ envVar: ENV_VAR, defaultRel: 'sockeye', args: ['-c', conf, ...args] });
}

/** Waits until the daemon's output matches `re` (its log lines); returns the match. */
async function waitOutput(srv, re, ms = 5000) {
    const deadline = Date.now() + ms;
    for (;;) {
        const m = re.exec(srv.output);
        if (m) return m;
        srv.assertAlive();
        if (Date.now() > deadline) throw new Error(`no log line matching ${re} within ${ms} ms\n${srv.describe()}`);
        await sleep(20);
    }
}

/** Number of matches of `re` (global) in the daemon's output so far. */
const countOutput = (srv, re) => (srv.output.match(re) || []).length;

/** Rejects when no ack came within `ms` (resolves the ack's first argument otherwise). */
const ack = (socket, ms, event, ...args) => socket.timeout(ms).emitWithAck(event, ...args);

/** Asserts that `event` gets no ack within `ms` (the rule stopped before its ack action). */
async function assertNoAck(socket, ms, event, ...args) {
    await assert.rejects(ack(socket, ms, event, ...args), /timed out/, `"${event}" must not be acked`);
}

/**
 * Closes a polling session opened by hand (Engine.IO close packet), so that a later SIGTERM
 * does not wait for the next poll of a client that will never come back.
 */
async function closeSession(port, sid) {
    const res = await httpRequest(port, {
        method: 'POST',
        path: `/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`,
        headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
        body: '1',
    });
    assert.equal(res?.status, 200, `closing session ${sid}: ${res?.status} ${res?.text}`);
}

let tmp;
/** Writes a config file into the test's temp directory; returns its path. */
function conf(name, text) {
    const file = path.join(tmp, name);
    writeFileSync(file, text);
    return file;
}

// A listener block for temp configs (--port overrides the port in every test).
const LISTENER = 'listeners = ( { address = "127.0.0.1"; port = 3000; } );';

describe('sockeye daemon', { skip: REF_SKIP }, () => {
    before(() => {
        tmp = mkdtempSync(path.join(os.tmpdir(), 'sockeye-daemon-'));
    });
    after(() => {
        if (tmp) rmSync(tmp, { recursive: true, force: true });
    });

    describe('command line', () => {
        test('--version and --help exit 0', T, async () => {
            const v = await run(['--version']);
            assert.equal(v.code, 0, v.stderr);
            assert.match(v.stdout, /^sockeye \d+\.\d+\.\d+/);
            const h = await run(['--help']);
            assert.equal(h.code, 0, h.stderr);
            for (const flag of ['-c', '--port', '--set', '--check-config', '--version', '--help'])
                assert.ok(h.stdout.includes(flag), `--help mentions ${flag}`);
        });

        test('bad command lines exit non-zero with a message', T, async () => {
            for (const args of [['--port', 'x'], ['--port', '70000'], ['--set', 'noequals'], ['--bogus'], ['extra']]) {
                const r = await run(args);
                assert.notEqual(r.code, 0, `sockeye ${args.join(' ')} must fail`);
                assert.ok(r.stderr.length > 0, `sockeye ${args.join(' ')} says why`);
            }
        });

        test('--check-config accepts every example config', T, async () => {
            for (const file of ['echo.conf', 'bench.conf', 'chat/sockeye.conf']) {
                const r = await run(['-c', path.join(EXAMPLES, file), '--check-config']);
                assert.equal(r.code, 0, `examples/${file}: ${r.stderr}`);
            }
        });

        test('a missing config file is an error naming the file', T, async () => {
            const file = path.join(tmp, 'does-not-exist.conf');
            const r = await run(['-c', file, '--check-config']);
            assert.notEqual(r.code, 0);
            assert.ok(r.stderr.includes(file), r.stderr);
        });
    });

    describe('config errors print file:line and exit non-zero', () => {
        // [name, file text, line of the error, what the message must also mention]
        const CASES = [
            ['wrong type', `${LISTENER}\nengine = {\n  ping_interval = "fast";\n};\n`, 3, /ping_interval/],
            ['unknown key', `${LISTENER}\nengine = {\n  path = "/socket.io/";\n  ping_intervall = 300;\n};\n`, 4, /ping_intervall/],
            ['bad value', `listeners = (\n  { address = "127.0.0.1";\n    port = 70000; }\n);\n`, 3, /port/],
            ['bad namespace pattern', `${LISTENER}\nnamespaces = (\n  { pattern = "/[abc"; }\n);\n`, 3, /pattern/],
            [
                'bad room pattern',
                `${LISTENER}\nnamespaces = (\n  { name = "/";\n    rooms = ( { pattern = "[abc"; } ); }\n);\n`,
                4,
                /pattern/,
            ],
            [
                'missing certificate file',
                `listeners = (\n  { address = "127.0.0.1"; port = 3000;\n    tls = { cert = "no-such-cert.pem"; key = "no-such-key.pem"; }; }\n);\n`,
                3,
                /no-such-cert\.pem/,
            ],
            [
                'bad template expression',
                `${LISTENER}\nnamespaces = ( { name = "/"; rules = (\n  { on = "echo";\n    actions = ( { ack = ( "{{nope}}" ); } ); }\n); } );\n`,
                4,
                /nope/,
            ],
            [
                'unterminated template',
                `${LISTENER}\nnamespaces = ( { name = "/"; rules = (\n  { on = "echo";\n    actions = ( { ack = ( "{{args.0" ); } ); }\n); } );\n`,
                4,
                /\{\{|unterminated/,
            ],
            [
                'two verbs in one action',
                `${LISTENER}\nnamespaces = ( { name = "/"; rules = (\n  { on = "echo";\n    actions = ( { emit = "x"; ack = ( ); } ); }\n); } );\n`,
                4,
                /verb/,
            ],
            ['syntax error', `${LISTENER}\nengine = {\n  ping_interval = ;\n};\n`, 3, /syntax/i],
        ];
        for (const [name, text, line, mention] of CASES) {
            test(name, T, async () => {
                const file = conf(`bad-${name.replace(/\W+/g, '-')}.conf`, text);
                const checked = await run(['-c', file, '--check-config']);
                assert.notEqual(checked.code, 0, `--check-config must fail: ${checked.stdout}`);
                assert.ok(checked.stderr.includes(`${file}:${line}:`), `expected "${file}:${line}:" in: ${checked.stderr}`);
                assert.match(checked.stderr, mention);
                // Without --check-config the daemon refuses to start, with the same message.
                const started = await run(['-c', file, '--port', '0']);
                assert.notEqual(started.code, 0, 'the daemon must refuse to start');
                assert.ok(started.stderr.includes(`${file}:${line}:`), started.stderr);
            });
        }

        test('bad --set overrides name the override', T, async () => {
            const file = conf('good.conf', `${LISTENER}\n`);
            for (const set of ['engine.ping_interval=abc', 'engine.no_such_key=1', 'engine.transports=polling']) {
                const r = await run(['-c', file, '--set', set, '--check-config']);
                assert.notEqual(r.code, 0, `--set ${set} must fail`);
                assert.ok(r.stderr.includes(set.split('=')[0]), `--set ${set}: ${r.stderr}`);
            }
            const ok = await run(['-c', file, '--set', 'engine.ping_interval=300', '--check-config']);
            assert.equal(ok.code, 0, ok.stderr);
        });
    });

    describe('--set and --port', () => {
        let srv;
        after(async () => {
            await srv?.stop();
        });

        test('overrides reach the Engine.IO handshake; --port picks the listener port', T, async () => {
            // The file's own port is 1 (not bindable here): --port must replace it.
            const file = conf('set.conf', 'listeners = ( { address = "127.0.0.1"; port = 1; } );\nengine = { ping_interval = 25000; };\n');
            srv = await startDaemon(file, ['--set', 'engine.ping_interval=300', '--set', 'engine.max_payload=5000']);
            const res = await httpRequest(srv.port, { path: '/socket.io/?EIO=4&transport=polling' });
            assert.equal(res.status, 200, res.text);
            const open = JSON.parse(res.text.slice(1));
            assert.equal(open.pingInterval, 300);
            assert.equal(open.maxPayload, 5000);
            assert.equal(open.pingTimeout, 20000, 'untouched settings keep their defaults');
            await closeSession(srv.port, open.sid);
        });
    });

    describe('static files and the client bundle', () => {
        let srv;
        before(async () => {
            srv = await startDaemon(path.join(EXAMPLES, 'chat', 'sockeye.conf'));
        });
        afterEach(() => srv.assertAlive());
        after(async () => {
            await srv?.stop();
        });
        const get = (p, headers = {}) => httpRequest(srv.port, { path: p, headers });

        test('GET / is the chat page, text/html; a .css is text/css', T, async () => {
            const res = await get('/');
            assert.equal(res.status, 200);
            assert.match(res.headers['content-type'], /^text\/html/);
            assert.equal(res.text, readFileSync(path.join(CHAT_PUBLIC, 'index.html'), 'utf8'));
            const css = await get('/style.css');
            assert.equal(css.status, 200);
            assert.match(css.headers['content-type'], /^text\/css/);
            assert.equal(css.text, readFileSync(path.join(CHAT_PUBLIC, 'style.css'), 'utf8'));
            const missing = await get('/no-such-file.html');
            assert.equal(missing.status, 404);
        });

        test('ETag and If-None-Match give 304 without a body', T, async () => {
            const res = await get('/index.html');
            assert.equal(res.status, 200);
            const etag = res.headers.etag;
            assert.ok(etag, 'an ETag header');
            const again = await get('/index.html', { 'If-None-Match': etag });
            assert.equal(again.status, 304);
            assert.equal(again.body.length, 0);
            assert.equal(again.headers.etag, etag);
            const other = await get('/index.html', { 'If-None-Match': 'W/"something-else"' });
            assert.equal(other.status, 200);
        });

        test('path traversal is refused (403/404), never the file', T, async () => {
            const attempts = [
                '/../../etc/passwd',
                '/%2e%2e/%2e%2e/etc/passwd',
                '/..%2f..%2fetc/passwd',
                '/%2e%2e%2f%2e%2e%2fetc%2fpasswd',
                '/.%2e/.%2e/etc/passwd',
                '/public/../../sockeye.conf',
                '/../sockeye.conf',
                '/%2e%2e/sockeye.conf',
                '/..%5csockeye.conf',
                '/....//....//etc/passwd',
                '/socket.io/../../etc/passwd',
                '/socket.io/..%2f..%2fetc/passwd',
                '/socket.io/..%2fpackage.json',
            ];
            for (const p of attempts) {
                const res = await get(p);
                assert.ok(res, `${p}: no response`);
                assert.ok([400, 403, 404].includes(res.status), `${p}: status ${res.status}`);
                assert.ok(!/root:.*:0:0:/.test(res.text), `${p}: served /etc/passwd`);
                assert.ok(!res.text.includes('namespaces'), `${p}: served the config file`);
                assert.ok(!res.text.includes('"name": "socket.io-client"'), `${p}: served package.json`);
            }
        });

        test('the client bundle: 200, JavaScript, ETag, 304, gzip when asked', T, async () => {
            const file = readFileSync(path.join(BUNDLE_DIR, 'socket.io.min.js'));
            const res = await get('/socket.io/socket.io.min.js');
            assert.equal(res.status, 200);
            assert.match(res.headers['content-type'], /javascript/);
            assert.ok(res.headers.etag, 'an ETag header');
            assert.ok(!res.headers['content-encoding'], 'not compressed unless asked');
            assert.deepEqual(res.body, file);
            const cached = await get('/socket.io/socket.io.min.js', { 'If-None-Match': res.headers.etag });
            assert.equal(cached.status, 304);
            const gz = await get('/socket.io/socket.io.min.js', { 'Accept-Encoding': 'gzip' });
            assert.equal(gz.status, 200);
            assert.equal(gz.headers['content-encoding'], 'gzip');
            assert.match(gz.headers.vary ?? '', /accept-encoding/i);
            assert.ok(gz.body.length < file.length, 'compressed is smaller');
            assert.deepEqual(gunzipSync(gz.body), file);
            // The other bundle files and their maps.
            for (const name of ['socket.io.js', 'socket.io.esm.min.js', 'socket.io.min.js.map']) {
                const r = await get(`/socket.io/${name}`);
                assert.equal(r.status, 200, name);
                assert.deepEqual(r.body, readFileSync(path.join(BUNDLE_DIR, name)), name);
            }
            // Only the allow-listed names: the msgpack build is in dist/ but not served.
            const other = await get('/socket.io/socket.io.msgpack.min.js');
            assert.notEqual(other.status, 200);
        });

        test('the engine path still answers Engine.IO', T, async () => {
            const res = await get('/socket.io/?EIO=4&transport=polling');
            assert.equal(res.status, 200);
            assert.ok(res.text.startsWith('0{'), res.text);
            await closeSession(srv.port, JSON.parse(res.text.slice(1)).sid);
        });
    });

    describe('examples/bench.conf', () => {
        let srv;
        let clients;
        before(async () => {
            srv = await startDaemon(path.join(EXAMPLES, 'bench.conf'));
            clients = new Clients(`http://127.0.0.1:${srv.port}`);
        });
        after(async () => {
            clients?.closeAll();
            await srv?.stop();
        });

        test('join(room) acks with no arguments, msg reaches the room but the sender, echo acks', T, async () => {
            const [a, b, c] = await Promise.all([
                clients.connect('websocket'),
                clients.connect('websocket'),
                clients.connect('polling'),
            ]);
            const joined = (s) =>
                new Promise((resolve, reject) =>
                    s.timeout(3000).emit('join', 'r1', (err, ...args) => (err ? reject(err) : resolve(args))),
                );
            assert.deepEqual(await joined(a), []);
            assert.deepEqual(await joined(b), []);
            a.emit('msg', 'r1', { t: 1, s: 'x'.repeat(100) });
            assert.deepEqual(await b.inbox.next('msg'), [{ t: 1, s: 'x'.repeat(100) }]);
            assert.deepEqual(await ack(a, 3000, 'echo', [1, 'two']), [1, 'two']);
            await barrier(c);
            assert.deepEqual(a.inbox.take('msg'), [], 'not to the sender');
            assert.deepEqual(c.inbox.take('msg'), [], 'not outside the room');
        });
    });

    describe('SIGHUP reload', () => {
        const ruleConf = (version, extra = '') => `${LISTENER}
log = { level = "info"; };
shutdown_grace = 2000;
namespaces = (
  { name = "/";
    rules = (
      { on = "echo"; actions = ( { ack = ( "${version}" ); } ); }
    ); }${extra}
);
`;
        let srv;
        let file;
        let clients;
        before(async () => {
            file = conf('reload.conf', ruleConf('v1'));
            srv = await startDaemon(file);
            clients = new Clients(`http://127.0.0.1:${srv.port}`);
        });
        after(async () => {
            clients?.closeAll();
            await srv?.stop();
        });

        /** SIGHUP, then wait for the n-th log line matching re. */
        async function hup(re) {
            const before = countOutput(srv, new RegExp(re.source, 'g'));
            srv.proc.kill('SIGHUP');
            const deadline = Date.now() + 5000;
            while (countOutput(srv, new RegExp(re.source, 'g')) <= before) {
                srv.assertAlive();
                if (Date.now() > deadline) throw new Error(`no ${re} after SIGHUP\n${srv.describe()}`);
                await sleep(20);
            }
        }

        test('a changed rule applies to new events; open connections stay', T, async () => {
            const ws = await clients.connect('websocket');
            const poll = await clients.connect('polling');
            const ids = [ws.id, poll.id];
            const engineIds = [ws.io.engine.id, poll.io.engine.id];
            const disconnects = [];
            ws.on('disconnect', (r) => disconnects.push(`ws: ${r}`));
            poll.on('disconnect', (r) => disconnects.push(`polling: ${r}`));
            assert.equal(await ack(ws, 3000, 'echo'), 'v1');
            assert.equal(await ack(poll, 3000, 'echo'), 'v1');

            writeFileSync(file, ruleConf('v2', ',\n  { name = "/added"; rules = ( { on = "echo"; actions = ( { ack = ( "added" ); } ); } ); }'));
            await hup(/reloaded/);
            assert.equal(await ack(ws, 3000, 'echo'), 'v2');
            assert.equal(await ack(poll, 3000, 'echo'), 'v2');
            assert.deepEqual([ws.id, poll.id], ids, 'same sockets');
            assert.deepEqual([ws.io.engine.id, poll.io.engine.id], engineIds, 'same Engine.IO sessions');
            assert.ok(ws.connected && poll.connected);
            assert.deepEqual(disconnects, []);
            // A namespace added by the reload accepts connections.
            const added = await clients.connect('websocket', {}, '/added');
            assert.equal(await ack(added, 3000, 'echo'), 'added');
        });

        test('a broken file is reported and the running rules stay', T, async () => {
            const ws = await clients.connect('websocket');
            const current = await ack(ws, 3000, 'echo');
            assert.match(current, /^v\d$/);
            writeFileSync(file, ruleConf('v3').replace('ack = ( "v3" )', 'ack = ( "{{nope}}" )'));
            await hup(/keeping the running configuration/);
            const lineOfAck = ruleConf('v3').split('\n').findIndex((l) => l.includes('ack = ( "v3" )')) + 1;
            assert.ok(srv.output.includes(`${file}:${lineOfAck}:`), `the log names file:line:\n${srv.output}`);
            assert.equal(await ack(ws, 3000, 'echo'), current, 'old rule still in force');
            const fresh = await clients.connect('polling');
            assert.equal(await ack(fresh, 3000, 'echo'), current, 'also for new connections');
            // A syntax error too.
            writeFileSync(file, 'namespaces = ( {');
            await hup(/keeping the running configuration/);
            assert.equal(await ack(ws, 3000, 'echo'), current);
            // Fixed again: the next SIGHUP applies it.
            writeFileSync(file, ruleConf('v4'));
            await hup(/reloaded/);
            assert.equal(await ack(ws, 3000, 'echo'), 'v4');
            assert.ok(ws.connected);
        });
    });

    describe('SIGTERM', () => {
        test('drains: clients are disconnected cleanly and the daemon exits 0 within the grace', T, async () => {
            const GRACE = 3000;
            const file = conf('drain.conf', `${LISTENER}\nlog = { level = "debug"; };\nshutdown_grace = ${GRACE};\nnamespaces = ( { name = "/"; rules = ( { on = "echo"; actions = ( { ack = ( "{{args.0}}" ); } ); } ); } );\n`);
            const srv = await startDaemon(file);
            const clients = new Clients(`http://127.0.0.1:${srv.port}`);
            try {
                const sockets = await Promise.all([
                    clients.connect('websocket'),
                    clients.connect('polling'),
                    clients.connect('upgrade'),
                ]);
                for (const s of sockets) await barrier(s);
                // Let the polling client's next long-poll reach the server first: the daemon
                // stops accepting on SIGTERM, so a poll that was not yet sent gets "connection
                // refused" (a transport error), not the close, and the drain then waits out
                // the whole grace period (reported; not what this test is about).
                await sleep(200);
                const reasons = sockets.map((s) => once(s, 'disconnect', GRACE + 1000));
                const started = Date.now();
                srv.proc.kill('SIGTERM');
                const exit = await within(srv.exited, GRACE + 1000, 'the daemon to exit after SIGTERM');
                const elapsed = Date.now() - started;
                assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, srv.describe());
                assert.ok(elapsed <= GRACE + 1000, `exited after ${elapsed} ms`);
                for (const [i, r] of (await Promise.all(reasons)).entries())
                    assert.ok(['io server disconnect', 'transport close'].includes(r[0]), `client ${i}: ${r[0]}`);
            } finally {
                clients.closeAll();
                if (!srv.exit) srv.proc.kill('SIGKILL');
            }
        });
    });

    describe('rooms: presence, history, max_members, join = "rules"', () => {
        let srv;
        let clients;
        before(async () => {
            const file = conf('rooms.conf', `${LISTENER}
namespaces = (
  { name = "/";
    other_rooms = "client";
    rooms = (
      { name = "lobby"; presence = true; history = 3; },
      { name = "small"; max_members = 2; },
      { name = "vip"; join = "rules"; },
      { pattern = "game-*"; presence = true; presence_event = "game"; }
    );
    rules = (
      { on = "join"; if = { min_args = 1; };
        actions = ( { join = "{{args.0}}"; }, { ack = ( "{{args.0}}" ); } ); },
      { on = "leave"; if = { min_args = 1; };
        actions = ( { leave = "{{args.0}}"; }, { ack = ( "{{args.0}}" ); } ); },
      { on = "say"; if = { min_args = 2; };
        actions = ( { emit = "said"; to = "room"; room = "{{args.0}}"; args = ( "{{args.1}}" ); },
                    { ack = ( ); } ); },
      { on = "promote";
        actions = ( { join = "vip"; }, { ack = ( "vip" ); } ); },
      { on = "echo"; actions = ( { ack = ( "{{args.0}}" ); } ); }
    ); }
);
`);
            srv = await startDaemon(file, ['--set', 'engine.max_rooms_per_socket=3']);
            clients = new Clients(`http://127.0.0.1:${srv.port}`);
        });
        afterEach(() => {
            clients.closeAll();
            srv.assertAlive();
        });
        after(async () => {
            clients?.closeAll();
            await srv?.stop();
        });

        const said = (s) => s.inbox.take('said').map((it) => it.args[0]);

        test('max_rooms_per_socket: a join past it is refused (the rule stops), rejoining is fine', T, async () => {
            const a = await clients.connect('websocket');
            for (const room of ['r1', 'r2', 'r3']) assert.equal(await ack(a, 3000, 'join', room), room);
            await assertNoAck(a, 500, 'join', 'r4');
            assert.equal(await ack(a, 3000, 'join', 'r2'), 'r2', 'already a member: not refused');
            assert.equal(await ack(a, 3000, 'leave', 'r1'), 'r1');
            assert.equal(await ack(a, 3000, 'join', 'r4'), 'r4', 'room freed by a leave');
        });

        test('history: a joiner gets the last 3 room events, in order, before its join ack', T, async () => {
            const a = await clients.connect('websocket');
            assert.equal(await ack(a, 3000, 'join', 'lobby'), 'lobby');
            for (let i = 1; i <= 5; i++) await ack(a, 3000, 'say', 'lobby', { n: i });
            const b = await clients.connect('polling');
            assert.equal(await ack(b, 3000, 'join', 'lobby'), 'lobby');
            assert.deepEqual(said(b), [{ n: 3 }, { n: 4 }, { n: 5 }]);
            // Live events after the join are not doubled by the replay.
            await ack(a, 3000, 'say', 'lobby', { n: 6 });
            assert.deepEqual(await b.inbox.next('said'), [{ n: 6 }]);
            await barrier(b);
            assert.deepEqual(said(b), []);
            // A second join of the same room is a no-op: no second replay.
            assert.equal(await ack(b, 3000, 'join', 'lobby'), 'lobby');
            assert.deepEqual(said(b), []);
        });

        test('presence: members get {room, id, event, size} on join, leave and disconnect', T, async () => {
            const a = await clients.connect('websocket');
            await ack(a, 3000, 'join', 'game-1');
            const b = await clients.connect('websocket');
            await ack(b, 3000, 'join', 'game-1');
            assert.deepEqual(await a.inbox.next('game'), [{ room: 'game-1', id: b.id, event: 'join', size: 2 }]);
            await ack(b, 3000, 'leave', 'game-1');
            assert.deepEqual(await a.inbox.next('game'), [{ room: 'game-1', id: b.id, event: 'leave', size: 1 }]);
            const c = await clients.connect('polling');
            await ack(c, 3000, 'join', 'game-1');
            const cid = c.id;
            assert.deepEqual(await a.inbox.next('game'), [{ room: 'game-1', id: cid, event: 'join', size: 2 }]);
            c.disconnect();
            assert.deepEqual(await a.inbox.next('game'), [{ room: 'game-1', id: cid, event: 'leave', size: 1 }]);
            // Sockets outside the room hear nothing.
            await barrier(b);
            assert.deepEqual(b.inbox.take('game'), [], 'b left the room: no notices after that');
        });

        test('max_members: the N+1-th join is refused (no ack, not a member); a freed place can be taken', T, async () => {
            const [a, b, c] = await Promise.all([
                clients.connect('websocket'),
                clients.connect('websocket'),
                clients.connect('polling'),
            ]);
            assert.equal(await ack(a, 3000, 'join', 'small'), 'small');
            assert.equal(await ack(b, 3000, 'join', 'small'), 'small');
            await assertNoAck(c, 700, 'join', 'small');
            await ack(a, 3000, 'say', 'small', 'hello');
            assert.deepEqual(await b.inbox.next('said'), ['hello']);
            await barrier(c);
            assert.deepEqual(said(c), [], 'the refused socket is not in the room');
            await ack(b, 3000, 'leave', 'small');
            assert.equal(await ack(c, 3000, 'join', 'small'), 'small');
            await ack(a, 3000, 'say', 'small', 'again');
            assert.deepEqual(await c.inbox.next('said'), ['again']);
        });

        test('join = "rules": a client-named join is refused, a rule-named join works', T, async () => {
            const [a, b] = await Promise.all([clients.connect('websocket'), clients.connect('polling')]);
            await assertNoAck(a, 700, 'join', 'vip');
            assert.equal(await ack(b, 3000, 'promote'), 'vip');
            await ack(b, 3000, 'say', 'vip', 'members only');
            assert.deepEqual(said(b), ['members only']);
            await barrier(a);
            assert.deepEqual(said(a), [], 'the client-named join did not happen');
            // Rooms not listed follow other_rooms = "client".
            assert.equal(await ack(a, 3000, 'join', 'anything'), 'anything');
        });
    });
});
