// Engine.IO v4 behaviour of the echo example, driven by the real engine.io-client (npm)
// and, where the library hides the wire, by raw HTTP / WebSocket (lib/raw.mjs).
//
// Server: $SOCKEYE_EIO_ECHO (default $top_builddir/examples/eio_echo).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { EioClient, toBuffer } from './lib/eio.mjs';
import * as R from './lib/raw.mjs';
import { eioEchoCommand, startEioEcho } from './lib/server.mjs';

const T = { timeout: 15000 };
const url = (srv) => `http://127.0.0.1:${srv.port}`;

const MODES = [
    { name: 'polling only', opts: { transports: ['polling'], upgrade: false }, transport: 'polling' },
    { name: 'websocket only', opts: { transports: ['websocket'], upgrade: false }, transport: 'websocket' },
    {
        name: 'polling upgraded to websocket',
        opts: { transports: ['polling', 'websocket'], upgrade: true },
        transport: 'websocket',
        upgrade: true,
    },
];

/** Open a client for `mode`; for the upgrade mode also wait for the 'upgrade' event. */
async function openMode(srv, mode, extra = {}) {
    const c = await EioClient.open(url(srv), { ...mode.opts, ...extra });
    if (mode.upgrade) {
        assert.equal(c.transport, 'polling', 'an upgrading client starts on polling');
        const name = await R.withTimeout(c.upgradeDone, 5000, "the client's 'upgrade' event");
        assert.equal(name, 'websocket');
    }
    assert.equal(c.transport, mode.transport);
    return c;
}

async function withClient(srv, mode, fn, extra = {}) {
    const c = await openMode(srv, mode, extra);
    try {
        await fn(c);
    } finally {
        c.close();
    }
}

// A silent session must be closed at pingInterval + pingTimeout after the open packet:
// not before (minus 20 ms for clock and delivery jitter) and at most 50 ms after.
function assertDroppedOnTime(elapsed, pi, pt, what, slack = 50) {
    const lo = pi + pt - 20;
    const hi = pi + pt + slack;
    assert.ok(elapsed >= lo && elapsed <= hi, `${what}: closed after ${elapsed.toFixed(1)} ms, expected within [${lo}, ${hi}]`);
}

it('the server under test exists', () => {
    eioEchoCommand();
});

describe('handshake', () => {
    let srv;
    before(async () => {
        srv = await startEioEcho(['--ping-interval', '1500', '--ping-timeout', '1200', '--max-payload', '50000']);
    });
    after(() => srv?.stop());

    it('polling handshake: status, headers, exact open packet', T, async () => {
        const res = await R.httpRequest(srv.port, { path: R.eioPath({ EIO: 4, transport: 'polling' }) });
        assert.equal(res.status, 200);
        assert.match(res.headers['content-type'] ?? '', /^text\/plain; ?charset=utf-8$/i);
        assert.equal(res.headers['cache-control'], 'no-store');
        assert.equal(res.headers['access-control-allow-origin'], '*');
        const open = R.parseOpen(res.text);
        assert.deepEqual(Object.keys(open).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
        assert.match(open.sid, /^[A-Za-z0-9_-]{20}$/);
        assert.deepEqual(open.upgrades, ['websocket']);
        assert.equal(open.pingInterval, 1500);
        assert.equal(open.pingTimeout, 1200);
        assert.equal(open.maxPayload, 50000);
    });

    it('websocket handshake: 101, then the open packet as the first text frame', T, async () => {
        const { ws, open } = await R.eioWebSocket(srv.port);
        try {
            assert.deepEqual(Object.keys(open).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
            assert.match(open.sid, /^[A-Za-z0-9_-]{20}$/);
            assert.deepEqual(open.upgrades, []);
            assert.equal(open.pingInterval, 1500);
            assert.equal(open.pingTimeout, 1200);
            assert.equal(open.maxPayload, 50000);
        } finally {
            ws.destroy();
        }
    });

    it('session ids are distinct', T, async () => {
        const sids = new Set();
        for (let i = 0; i < 30; i++) sids.add((await R.pollingHandshake(srv.port)).sid);
        assert.equal(sids.size, 30);
    });

    it('CORS preflight: OPTIONS gets 204 with Access-Control-Allow-Origin', T, async () => {
        const res = await R.httpRequest(srv.port, {
            method: 'OPTIONS',
            path: R.eioPath({ EIO: 4, transport: 'polling' }),
            headers: { Origin: 'http://example.test', 'Access-Control-Request-Method': 'POST' },
        });
        assert.equal(res.status, 204);
        assert.equal(res.headers['access-control-allow-origin'], '*');
        assert.match(res.headers['access-control-allow-methods'] ?? '', /POST/);
    });
});

describe('echo with engine.io-client', () => {
    let srv;
    before(async () => {
        srv = await startEioEcho();
    });
    after(() => srv?.stop());

    for (const mode of MODES) {
        describe(mode.name, () => {
            it(`opens on ${mode.transport}`, T, async () => {
                await withClient(srv, mode, async (c) => {
                    assert.equal(c.transport, mode.transport);
                    assert.equal(c.readyState, 'open');
                });
            });

            it('echoes text, multibyte UTF-8 and the empty string as text', T, async () => {
                await withClient(srv, mode, async (c) => {
                    // (U+001E cannot be carried over EIO4 polling: it is the payload separator.)
                    for (const s of ['hello', 'héllo wörld ✓ 日本語 🎉 \u0000 end', '4', 'b', '2', 'x'.repeat(70000)]) {
                        const got = await c.echo(s);
                        assert.equal(typeof got, 'string', `echo of ${JSON.stringify(s.slice(0, 20))} must stay text`);
                        assert.equal(got, s);
                    }
                    // engine.io-client reports the empty message (packet `4`) as undefined;
                    // the raw tests below check the bytes.
                    const empty = await c.echo('');
                    assert.ok(empty === '' || empty === undefined, `empty string echoed as ${JSON.stringify(empty)}`);
                    assert.equal(await c.echo('after empty'), 'after empty');
                });
            });

            it('echoes binary as binary (Buffer and Uint8Array round trips)', T, async () => {
                await withClient(srv, mode, async (c) => {
                    const cases = [
                        Buffer.from([0, 1, 2, 3, 255]),
                        new Uint8Array([0xde, 0xad, 0xbe, 0xef]),
                        Buffer.from('4text-looking bytes'),
                        Buffer.from([0x1e, 0x62, 0x34]),
                        randomBytes(1),
                        randomBytes(65536 + 7),
                    ];
                    for (const b of cases) {
                        const got = await c.echo(b);
                        assert.notEqual(typeof got, 'string', 'binary must come back as binary');
                        assert.deepEqual(toBuffer(got), Buffer.from(b));
                    }
                });
            });

            it('delivers many messages in order (text and binary interleaved)', T, async () => {
                await withClient(srv, mode, async (c) => {
                    const N = 600;
                    for (let i = 0; i < N; i++) c.send(i % 3 === 2 ? Buffer.from(`bin-${i}`) : `msg-${i}`);
                    for (let i = 0; i < N; i++) {
                        const got = await c.next();
                        if (i % 3 === 2) assert.deepEqual(toBuffer(got), Buffer.from(`bin-${i}`));
                        else assert.equal(got, `msg-${i}`);
                    }
                });
            });
        });
    }

    it('raw polling: an empty text message and an empty binary message round-trip', T, async () => {
        const h = await R.pollingHandshake(srv.port);
        const p = await R.pollPost(srv.port, h.sid, `4${R.RS}b${R.RS}4x`);
        assert.equal(p.status, 200);
        let got = [];
        while (got.length < 3) {
            const g = await R.pollGet(srv.port, h.sid);
            assert.equal(g.status, 200);
            got = got.concat(R.decodePayload(g.text));
        }
        assert.deepEqual(got, ['4', 'b', '4x']);
    });

    it('raw websocket: an empty text message and an empty binary frame round-trip', T, async () => {
        const { ws } = await R.eioWebSocket(srv.port);
        try {
            ws.sendText('4');
            assert.equal(await ws.nextText(), '4');
            ws.sendBinary(Buffer.alloc(0));
            const m = await ws.nextMessage();
            assert.deepEqual(m.binary, Buffer.alloc(0), 'an empty binary frame comes back as an empty binary frame');
            ws.sendText('4x');
            assert.equal(await ws.nextText(), '4x');
        } finally {
            ws.destroy();
        }
    });

    it('messages sent while the upgrade is in flight arrive once, in order', T, async () => {
        const c = await EioClient.open(url(srv), { transports: ['polling', 'websocket'], upgrade: true });
        try {
            const N = 200;
            for (let i = 0; i < N; i++) c.send(`early-${i}`);
            for (let i = 0; i < N; i++) assert.equal(await c.next(), `early-${i}`);
            assert.equal(await R.withTimeout(c.upgradeDone, 5000, 'upgrade'), 'websocket');
            assert.equal(await c.echo('after upgrade'), 'after upgrade');
            assert.equal(c.messages.length, 0, 'no duplicates');
        } finally {
            c.close();
        }
    });

    it('raw upgrade: 2probe/3probe, pending GET answered 6, buffered packets flushed, polling then refused with code 3', T, async () => {
        const h = await R.pollingHandshake(srv.port);
        const pendingGet = R.pollGet(srv.port, h.sid);
        await R.sleep(30);
        const { ws } = await R.eioWebSocket(srv.port, { sid: h.sid });
        try {
            ws.sendText('2probe');
            assert.equal(await ws.nextText(), '3probe');
            const g = await R.withTimeout(pendingGet, 1000, 'the pending GET to be answered once the probe succeeded');
            assert.equal(g.status, 200);
            assert.deepEqual(R.decodePayload(g.text), ['6']);
            // Echoed while no GET is pending: must be flushed over the WebSocket after `5`.
            const p = await R.pollPost(srv.port, h.sid, '4queued during upgrade');
            assert.equal(p.status, 200);
            assert.equal(p.text, 'ok');
            await R.sleep(30);
            ws.sendText('5');
            assert.equal(await ws.nextText(), '4queued during upgrade');
            ws.sendText('4over websocket');
            assert.equal(await ws.nextText(), '4over websocket');
            ws.sendBinary(Buffer.from([9, 8, 7]));
            assert.deepEqual((await ws.nextMessage()).binary, Buffer.from([9, 8, 7]));
            for (const req of [
                { path: R.eioPath({ EIO: 4, transport: 'polling', sid: h.sid }) },
                { method: 'POST', path: R.eioPath({ EIO: 4, transport: 'polling', sid: h.sid }), body: '4late' },
            ]) {
                const res = await R.httpRequest(srv.port, req);
                assert.equal(res.status, 400, `${req.method ?? 'GET'} after the upgrade`);
                assert.deepEqual(JSON.parse(res.text), { code: 3, message: 'Bad request' });
            }
            // The session is still alive on the WebSocket.
            ws.sendText('4still here');
            assert.equal(await ws.nextText(), '4still here');
        } finally {
            ws.destroy();
        }
    });
});

describe('maxPayload (--max-payload 1000)', () => {
    const MAX = 1000;
    let srv;
    before(async () => {
        srv = await startEioEcho(['--max-payload', String(MAX)]);
    });
    after(() => srv?.stop());

    it('is advertised in the handshake', T, async () => {
        const h = await R.pollingHandshake(srv.port);
        assert.equal(h.maxPayload, MAX);
    });

    // Over polling maxPayload bounds the whole POST body (bytes, not characters).
    it('polling: a POST body of exactly maxPayload bytes is accepted, one byte more gets 413', T, async () => {
        const h = await R.pollingHandshake(srv.port);
        const exact = [`4${'x'.repeat(MAX - 1)}`, `4${'é'.repeat((MAX - 1 - 1) / 2)}y`, `4${'a'.repeat(400)}${R.RS}4${'b'.repeat(MAX - 403)}`];
        for (const body of exact) {
            assert.equal(Buffer.byteLength(body), MAX);
            const p = await R.pollPost(srv.port, h.sid, body);
            assert.equal(p.status, 200, `POST of ${MAX} bytes`);
            assert.equal(p.text, 'ok');
            const g = await R.pollGet(srv.port, h.sid);
            assert.equal(g.status, 200);
            assert.deepEqual(R.decodePayload(g.text), R.decodePayload(body));
        }
        for (const body of [`4${'x'.repeat(MAX)}`, `4${'é'.repeat(MAX / 2)}`]) {
            assert.equal(Buffer.byteLength(body), MAX + 1);
            const p = await R.pollPost(srv.port, h.sid, body);
            assert.equal(p.status, 413, `POST of ${MAX + 1} bytes`);
            assert.equal(p.body.length, 0, '413 has an empty body');
        }
        // The session survives a 413 and nothing of the rejected body was processed.
        const p = await R.pollPost(srv.port, h.sid, '4after 413');
        assert.equal(p.status, 200);
        const g = await R.pollGet(srv.port, h.sid);
        assert.deepEqual(R.decodePayload(g.text), ['4after 413']);
    });

    // Over WebSocket maxPayload bounds the frame payload (the Engine.IO packet).
    it('websocket: a text frame of exactly maxPayload bytes is echoed, one byte more is closed with 1009', T, async () => {
        {
            const { ws } = await R.eioWebSocket(srv.port);
            try {
                const text = `4${'é'.repeat((MAX - 2) / 2)}z`;
                assert.equal(Buffer.byteLength(text), MAX);
                ws.sendText(text);
                assert.equal(await ws.nextText(), text);
                ws.sendText(`4${'x'.repeat(MAX)}`);
                const c = await ws.waitClose(3000);
                assert.equal(c.code, 1009);
            } finally {
                ws.destroy();
            }
        }
    });

    it('websocket: a binary frame of exactly maxPayload bytes is echoed, one byte more is closed with 1009', T, async () => {
        const { ws } = await R.eioWebSocket(srv.port);
        try {
            const bin = randomBytes(MAX);
            ws.sendBinary(bin);
            assert.deepEqual((await ws.nextMessage()).binary, bin);
            ws.sendBinary(randomBytes(MAX + 1));
            const c = await ws.waitClose(3000);
            assert.equal(c.code, 1009);
        } finally {
            ws.destroy();
        }
    });

    for (const mode of MODES.slice(0, 2)) {
        it(`${mode.name} client: a message of maxPayload-1 characters round-trips, a bigger one closes the client`, T, async () => {
            const c = await openMode(srv, mode);
            try {
                const fits = 'y'.repeat(MAX - 1); // + the type byte = MAX
                assert.equal(await c.echo(fits), fits);
                c.send('z'.repeat(MAX));
                const info = await c.waitClose(3000);
                assert.ok(info.reason, 'closed with a reason');
            } finally {
                c.close();
            }
        });
    }
});

describe('heartbeat (--ping-interval 200 --ping-timeout 200)', () => {
    const PI = 200;
    const PT = 200;
    let srv;
    before(async () => {
        srv = await startEioEcho(['--ping-interval', String(PI), '--ping-timeout', String(PT)]);
    });
    after(() => srv?.stop());

    for (const mode of MODES) {
        it(`${mode.name}: an idle client that answers pings stays open past 3 intervals`, T, async () => {
            await withClient(srv, mode, async (c) => {
                await R.sleep(3 * PI + 150);
                assert.equal(c.readyState, 'open');
                assert.equal(c.closeInfo, null);
                assert.ok(c.pings >= 3, `saw ${c.pings} pings`);
                assert.equal(await c.echo('still open'), 'still open');
            });
        });
    }

    it('polling: a client that never answers pings is dropped at pingInterval + pingTimeout', T, async () => {
        const h = await R.pollingHandshake(srv.port);
        assert.equal(h.pingInterval, PI);
        assert.equal(h.pingTimeout, PT);
        const first = await R.pollGet(srv.port, h.sid, { timeoutMs: 3000 });
        assert.equal(first.status, 200);
        assert.deepEqual(R.decodePayload(first.text), ['2'], 'the first GET returns the ping');
        const pingAt = performance.now() - h.openedAt;
        assert.ok(pingAt >= PI - 20 && pingAt <= PI + 50, `ping after ${pingAt.toFixed(1)} ms`);
        // Never send 3; keep a GET pending: it must be answered with the close packet.
        const second = await R.pollGet(srv.port, h.sid, { timeoutMs: 3000 });
        const elapsed = performance.now() - h.openedAt;
        assert.equal(second.status, 200);
        assert.ok(R.decodePayload(second.text).includes('1'), `pending GET answered ${JSON.stringify(second.text)}`);
        assertDroppedOnTime(elapsed, PI, PT, 'polling session');
        const third = await R.pollGet(srv.port, h.sid);
        assert.equal(third.status, 400);
        assert.deepEqual(JSON.parse(third.text), { code: 1, message: 'Session ID unknown' });
    });

    it('websocket: a client that never answers pings is dropped at pingInterval + pingTimeout', T, async () => {
        const { ws, open, openedAt } = await R.eioWebSocket(srv.port);
        try {
            assert.equal(open.pingInterval, PI);
            const ping = await ws.nextText(3000);
            assert.equal(ping, '2');
            const pingAt = performance.now() - openedAt;
            assert.ok(pingAt >= PI - 20 && pingAt <= PI + 50, `ping after ${pingAt.toFixed(1)} ms`);
            const c = await ws.waitClose(3000);
            assert.ok(c.tcpClosed, 'TCP connection closed');
            const closedAt = c.frame ? c.frame.at : c.closedAt;
            assert.equal(c.frames.length, 0, 'nothing but the close after the ping');
            assertDroppedOnTime(closedAt - openedAt, PI, PT, 'websocket session');
        } finally {
            ws.destroy();
        }
    });

    it('websocket: only a pong resets the heartbeat (messages do not)', T, async () => {
        const { ws, openedAt } = await R.eioWebSocket(srv.port);
        const timer = setInterval(() => ws.sendText('4chatter'), 40);
        try {
            let closedAt = null;
            const deadline = performance.now() + 3000;
            while (closedAt === null && performance.now() < deadline) {
                const f = await ws.nextFrame(deadline - performance.now());
                if (f === null) closedAt = ws.conn.closedAt ?? performance.now();
                else if (f.opcode === R.OP.CLOSE) closedAt = f.at;
            }
            assert.ok(closedAt !== null, 'the server closed the session');
            // A heartbeat reset by the messages would close at 2*PI + PT at the earliest.
            assertDroppedOnTime(closedAt - openedAt, PI, PT, 'chatty session without pongs', 100);
        } finally {
            clearInterval(timer);
            ws.destroy();
        }
    });

    it('websocket: a raw client that answers each ping with 3 stays open', T, async () => {
        const { ws } = await R.eioWebSocket(srv.port);
        try {
            const until = performance.now() + 3 * PI + 150;
            let pings = 0;
            while (performance.now() < until) {
                const f = await ws.nextFrame(until - performance.now() + 100).catch(() => undefined);
                if (f === undefined) break;
                assert.ok(f !== null && f.opcode === R.OP.TEXT, 'no close while pongs are sent');
                if (f.payload.toString() === '2') {
                    pings++;
                    ws.sendText('3');
                }
            }
            assert.ok(pings >= 3, `saw ${pings} pings`);
            ws.sendText('4alive');
            let m;
            do m = await ws.nextText(); while (m === '2');
            assert.equal(m, '4alive');
        } finally {
            ws.destroy();
        }
    });
});
