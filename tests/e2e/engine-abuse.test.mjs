// Raw HTTP and raw WebSocket abuse of the Engine.IO echo example (node:net, hand-made
// frames). Each case checks the exact answer required by shared/protocol.md §A-§G and RFC
// 6455, then that normal clients are still served by the same server process.
//
// Server: $SOCKEYE_EIO_ECHO (default $top_builddir/examples/eio_echo).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertEchoWorks } from './lib/eio.mjs';
import * as R from './lib/raw.mjs';
import { REF, eioEchoCommand, startEioEcho } from './lib/server.mjs';

const T = { timeout: 15000 };
const MAX = 1000;
const UPGRADE_TIMEOUT = 500;
const SESSION_UNKNOWN = { code: 1, message: 'Session ID unknown' };

const q = (params) => R.eioPath({ EIO: 4, transport: 'polling', ...params });

/** An Engine.IO HTTP error: status, JSON content type, exact body, CORS header. */
function assertEioError(res, code, message, what) {
    assert.ok(res, `${what}: the server closed without answering`);
    assert.equal(res.status, code === 4 ? 403 : 400, `${what}: status`);
    assert.match(res.headers['content-type'] ?? '', /^application\/json/, `${what}: content type`);
    assert.deepEqual(JSON.parse(res.text), { code, message }, `${what}: body`);
    assert.equal(res.headers['access-control-allow-origin'], '*', `${what}: CORS header on errors`);
}

/**
 * The polling session is closed: the pending GET (if any) must be answered and carry the
 * close packet `1` when `pendingGetCloses`; later GETs get 400 code 1 (a server may first
 * hand out a queued `1`, protocol.md §21).
 */
async function assertSessionClosed(port, sid, { pending, pendingGetCloses = true } = {}) {
    if (pending) {
        const r = await pending;
        assert.ok(r, 'the pending GET was answered');
        assert.equal(r.status, 200, 'the pending GET is answered 200');
        if (pendingGetCloses) assert.deepEqual(R.decodePayload(r.text), ['1'], 'the pending GET gets the close packet');
    }
    for (let i = 0; i < 3; i++) {
        const r = await R.pollGet(port, sid, { timeoutMs: 1500 });
        if (r.status === 400) {
            assert.deepEqual(JSON.parse(r.text), SESSION_UNKNOWN);
            return;
        }
        assert.equal(r.status, 200);
        assert.ok(R.decodePayload(r.text).includes('1'), `GET on a closed session answered ${JSON.stringify(r.text)}`);
    }
    assert.fail('the session is still open');
}

/** Open an Engine.IO WebSocket session, run `act(ws)`, expect the server to close with `code`. */
async function expectWsClose(port, act, code, { tcp = true } = {}) {
    const { ws } = await R.eioWebSocket(port);
    try {
        await act(ws);
        const c = await ws.waitClose(3000);
        if (code !== undefined) assert.equal(c.code, code, `close code (reason ${JSON.stringify(c.reason)})`);
        assert.equal(c.frames.filter((f) => f.opcode !== R.OP.PING && f.payload.toString() !== '2').length, 0, 'no data frame before the close');
        if (tcp) assert.ok(c.tcpClosed, 'the TCP connection is closed');
        return c;
    } finally {
        ws.destroy();
    }
}

it('the server under test exists', () => {
    eioEchoCommand();
});

describe(`abuse (--max-payload ${MAX} --upgrade-timeout ${UPGRADE_TIMEOUT})`, () => {
    let srv;
    let port;
    before(async () => {
        srv = await startEioEcho(['--max-payload', String(MAX), '--upgrade-timeout', String(UPGRADE_TIMEOUT)]);
        port = srv.port;
    });
    after(() => srv?.stop());

    // Every case ends with this: the same server process still serves normal clients.
    async function healthy() {
        srv.assertAlive();
        await assertEchoWorks(port);
        srv.assertAlive();
    }

    describe('HTTP error codes (protocol.md §A)', () => {
        it('code 0 Transport unknown: unknown or missing transport', T, async () => {
            for (const params of [{ EIO: 4, transport: 'foo' }, { EIO: 4 }, { EIO: 4, transport: '' }, { EIO: 4, transport: 'Polling' }]) {
                const res = await R.httpRequest(port, { path: R.eioPath(params) });
                assertEioError(res, 0, 'Transport unknown', JSON.stringify(params));
            }
            const h = await R.pollingHandshake(port);
            assertEioError(await R.httpRequest(port, { path: R.eioPath({ EIO: 4, transport: 'foo', sid: h.sid }) }), 0, 'Transport unknown', 'unknown transport with a sid');
            await healthy();
        });

        it('code 1 Session ID unknown: GET and POST with an unknown sid', T, async () => {
            assertEioError(await R.pollGet(port, 'AAAAAAAAAAAAAAAAAAAA'), 1, 'Session ID unknown', 'GET');
            assertEioError(await R.pollPost(port, 'AAAAAAAAAAAAAAAAAAAA', '4x'), 1, 'Session ID unknown', 'POST');
            await healthy();
        });

        it('code 2 Bad handshake method: POST or PUT without sid', T, async () => {
            for (const method of ['POST', 'PUT']) {
                const res = await R.httpRequest(port, { method, path: q({}), body: '4hi' });
                assertEioError(res, 2, 'Bad handshake method', method);
            }
            await healthy();
        });

        it('code 3 Bad request: transport=websocket without Upgrade, transport mismatch', T, async () => {
            assertEioError(await R.httpRequest(port, { path: R.eioPath({ EIO: 4, transport: 'websocket' }) }), 3, 'Bad request', 'websocket handshake without Upgrade');
            const h = await R.pollingHandshake(port);
            assertEioError(
                await R.httpRequest(port, { path: R.eioPath({ EIO: 4, transport: 'websocket', sid: h.sid }) }),
                3,
                'Bad request',
                'transport=websocket on a polling session without Upgrade',
            );
            await healthy();
        });

        it('code 3 Bad request: polling on an upgraded session', T, async () => {
            const h = await R.pollingHandshake(port);
            const { ws } = await R.eioWebSocket(port, { sid: h.sid });
            try {
                ws.sendText('2probe');
                assert.equal(await ws.nextText(), '3probe');
                ws.sendText('5');
                ws.sendText('4upgraded');
                assert.equal(await ws.nextText(), '4upgraded');
                assertEioError(await R.pollGet(port, h.sid), 3, 'Bad request', 'GET after upgrade');
                assertEioError(await R.pollPost(port, h.sid, '4x'), 3, 'Bad request', 'POST after upgrade');
                ws.sendText('4still upgraded');
                assert.equal(await ws.nextText(), '4still upgraded');
            } finally {
                ws.destroy();
            }
            await healthy();
        });

        // code 4 Forbidden needs the allow-request hook: see engine-options.test.mjs.

        it('code 5 Unsupported protocol version: EIO=3, EIO=5, EIO=abc, missing EIO', T, async () => {
            for (const params of [{ EIO: 3, transport: 'polling' }, { EIO: 5, transport: 'polling' }, { EIO: 'abc', transport: 'polling' }, { transport: 'polling' }]) {
                const res = await R.httpRequest(port, { path: R.eioPath(params) });
                assertEioError(res, 5, 'Unsupported protocol version', JSON.stringify(params));
            }
            await healthy();
        });
    });

    describe('long-polling (protocol.md §D)', () => {
        it('a second concurrent GET gets 400, the pending GET is answered 1, the session is closed', T, async () => {
            const h = await R.pollingHandshake(port);
            const pending = R.pollGet(port, h.sid);
            await R.sleep(50);
            const second = await R.pollGet(port, h.sid);
            assert.equal(second.status, 400);
            await assertSessionClosed(port, h.sid, { pending });
            await healthy();
        });

        it('a second concurrent POST gets 400 and the session is closed', T, async () => {
            const h = await R.pollingHandshake(port);
            const pending = R.pollGet(port, h.sid);
            const first = await R.RawConn.connect(port);
            try {
                // The first POST announces 10 bytes and sends 4: it is still in progress.
                first.write(R.buildRequest({ method: 'POST', path: q({ sid: h.sid }), headers: { 'Content-Length': '10', 'Content-Type': 'text/plain' } }));
                first.write('4abc');
                await R.sleep(50);
                const second = await R.pollPost(port, h.sid, '4def');
                assert.equal(second.status, 400);
                await assertSessionClosed(port, h.sid, { pending });
            } finally {
                first.destroy();
            }
            await healthy();
        });

        it(`a POST over maxPayload gets 413 with an empty body; the session stays open`, T, async () => {
            const h = await R.pollingHandshake(port);
            const res = await R.pollPost(port, h.sid, `4${'x'.repeat(MAX)}`);
            assert.equal(res.status, 413);
            assert.equal(res.body.length, 0);
            // Also when the body is far larger than the limit (the server must not buffer it).
            const big = await R.pollPost(port, h.sid, `4${'x'.repeat(200 * MAX)}`).catch(() => null);
            assert.ok(big === null || big.status === 413, `huge POST answered ${big?.status}`);
            const ok = await R.pollPost(port, h.sid, '4after');
            assert.equal(ok.status, 200);
            assert.equal(ok.text, 'ok');
            const g = await R.pollGet(port, h.sid);
            assert.deepEqual(R.decodePayload(g.text), ['4after']);
            await healthy();
        });

        it('a binary POST (application/octet-stream) under EIO=4 gets 400 and closes the session', T, async () => {
            const h = await R.pollingHandshake(port);
            const pending = R.pollGet(port, h.sid);
            await R.sleep(30);
            const res = await R.pollPost(port, h.sid, Buffer.from([4, 1, 2, 3]), { headers: { 'Content-Type': 'application/octet-stream' } });
            assert.equal(res.status, 400);
            await assertSessionClosed(port, h.sid, { pending });
            await healthy();
        });

        it('the client POSTs 1 while a GET is pending: POST ok, GET answered 6, session closed', T, async () => {
            const h = await R.pollingHandshake(port);
            const pending = R.pollGet(port, h.sid);
            await R.sleep(30);
            const res = await R.pollPost(port, h.sid, '1');
            assert.equal(res.status, 200);
            assert.equal(res.text, 'ok');
            const g = await pending;
            assert.equal(g.status, 200);
            assert.deepEqual(R.decodePayload(g.text), ['6']);
            assertEioError(await R.pollGet(port, h.sid), 1, 'Session ID unknown', 'GET after close');
            await healthy();
        });

        it('the client aborts a pending GET: the session is closed', T, async () => {
            const h = await R.pollingHandshake(port);
            const c = await R.RawConn.connect(port);
            c.write(R.buildRequest({ path: q({ sid: h.sid }) }));
            await R.sleep(50);
            c.destroy();
            await R.sleep(100);
            assertEioError(await R.pollGet(port, h.sid, { timeoutMs: 2000 }), 1, 'Session ID unknown', 'GET after abort');
            await healthy();
        });

        for (const [name, body] of [
            ['an unknown packet type', '9x'],
            ['a packet that is not a digit', 'x'],
            ['an empty body', ''],
            ['an empty packet between two messages', `4a${R.RS}${R.RS}4b`],
        ]) {
            it(`a POST with ${name} closes the session`, T, async () => {
                const h = await R.pollingHandshake(port);
                const pending = R.pollGet(port, h.sid);
                await R.sleep(30);
                const res = await R.pollPost(port, h.sid, body);
                assert.ok(res === null || res.status === 200 || res.status === 400, `POST answered ${res?.status}`);
                await assertSessionClosed(port, h.sid, { pending, pendingGetCloses: !body.startsWith('4a') });
                await healthy();
            });
        }

        it('a client ping (2) under EIO=4 closes the session; the POST still gets ok', T, async () => {
            const h = await R.pollingHandshake(port);
            const pending = R.pollGet(port, h.sid);
            await R.sleep(30);
            const res = await R.pollPost(port, h.sid, '2');
            assert.equal(res.status, 200);
            assert.equal(res.text, 'ok');
            await assertSessionClosed(port, h.sid, { pending });
            await healthy();
        });
    });

    describe('HTTP framing', () => {
        it('bytes that are not HTTP: the connection is closed (400 at most)', T, async () => {
            for (const junk of [Buffer.from([0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5, 0xff, 0xfe, 0, 0, 13, 10, 13, 10]), Buffer.from('\x00\x01\x02garbage\r\n\r\n'), Buffer.from('GET\r\n\r\n')]) {
                const c = await R.RawConn.connect(port);
                try {
                    c.write(junk);
                    const res = await c.readHttpResponse(3000);
                    assert.ok(res === null || (res.status >= 400 && res.status < 500), `junk answered ${res?.status}`);
                    assert.ok(await c.waitEnded(3000), 'the server closes the connection');
                } finally {
                    c.destroy();
                }
            }
            await healthy();
        });

        it('request headers of 100 KiB are refused and the connection closed', T, async () => {
            const c = await R.RawConn.connect(port);
            try {
                c.write(R.buildRequest({ path: q({}), headers: { 'X-Big': 'a'.repeat(100 * 1024) } }));
                const res = await c.readHttpResponse(3000).catch(() => null);
                assert.ok(res === null || res.status === 431 || res.status === 400 || res.status === 413, `answered ${res?.status}`);
                assert.ok(await c.waitEnded(3000), 'the server closes the connection');
            } finally {
                c.destroy();
            }
            await healthy();
        });
    });

    describe('WebSocket frames (RFC 6455, protocol.md §E)', () => {
        it('an unmasked client frame: close 1002', T, async () => {
            await expectWsClose(port, (ws) => ws.sendText('4unmasked', { mask: false }), 1002);
            await healthy();
        });

        it('a control frame over 125 bytes: close 1002', T, async () => {
            await expectWsClose(port, (ws) => ws.send({ opcode: R.OP.PING, payload: Buffer.alloc(126, 0x61) }), 1002);
            await healthy();
        });

        it('a fragmented control frame: close 1002', T, async () => {
            await expectWsClose(port, (ws) => ws.send({ opcode: R.OP.PING, payload: 'x', fin: false }), 1002);
            await healthy();
        });

        it('invalid UTF-8 in a text frame: close 1007', T, async () => {
            await expectWsClose(port, (ws) => ws.sendText(Buffer.from([0x34, 0xc3, 0x28])), 1007);
            await healthy();
        });

        it('invalid UTF-8 split across fragments: close 1007', T, async () => {
            await expectWsClose(
                port,
                (ws) => {
                    ws.sendText(Buffer.from([0x34, 0xe2, 0x82]), { fin: false });
                    ws.send({ opcode: R.OP.CONT, payload: Buffer.from([0x41]) });
                },
                1007,
            );
            await healthy();
        });

        for (const [name, payload] of [
            ['code 999', R.closePayload(999)],
            ['code 1005 (reserved)', R.closePayload(1005)],
            ['code 1006 (reserved)', R.closePayload(1006)],
            ['code 5000', R.closePayload(5000)],
            ['a one-byte payload', Buffer.from([3])],
        ]) {
            it(`a close frame with ${name}: close 1002`, T, async () => {
                await expectWsClose(port, (ws) => ws.send({ opcode: R.OP.CLOSE, payload }), 1002);
                await healthy();
            });
        }

        it('a valid close frame (1000) is answered with a close frame', T, async () => {
            const c = await expectWsClose(port, (ws) => ws.send({ opcode: R.OP.CLOSE, payload: R.closePayload(1000, 'bye') }), undefined);
            assert.ok(c.frame, 'a close frame came back');
            assert.ok(c.code === 1000 || c.code === null, `echoed close code ${c.code}`);
            await healthy();
        });

        it('reserved bits without an extension, an unknown opcode, a stray continuation: close 1002', T, async () => {
            await expectWsClose(port, (ws) => ws.sendText('4rsv', { rsv: 4 }), 1002);
            await expectWsClose(port, (ws) => ws.send({ opcode: 3, payload: 'x' }), 1002);
            await expectWsClose(port, (ws) => ws.send({ opcode: R.OP.CONT, payload: '4x' }), 1002);
            await expectWsClose(
                port,
                (ws) => {
                    ws.sendText('4a', { fin: false });
                    ws.sendText('4b');
                },
                1002,
            );
            await healthy();
        });

        it(`a frame bigger than maxPayload (${MAX}): close 1009`, T, async () => {
            await expectWsClose(port, (ws) => ws.sendText(`4${'x'.repeat(MAX)}`), 1009);
            await expectWsClose(port, (ws) => ws.sendBinary(Buffer.alloc(MAX + 1)), 1009);
            // Announced length far beyond the limit, payload never sent: refused on the header.
            await expectWsClose(port, (ws) => ws.sendRaw(Buffer.from([0x81, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4])), 1009);
            await healthy();
        });

        it(`a fragmented message adding up to more than maxPayload: close 1009`, T, async () => {
            await expectWsClose(
                port,
                (ws) => {
                    ws.sendText(`4${'x'.repeat(600)}`, { fin: false });
                    ws.send({ opcode: R.OP.CONT, payload: 'y'.repeat(600) });
                },
                1009,
            );
            await healthy();
        });

        it('a fragmented message within maxPayload is reassembled, with a ping in between', T, async () => {
            const { ws } = await R.eioWebSocket(port);
            try {
                ws.sendText('4frag', { fin: false });
                ws.send({ opcode: R.OP.PING, payload: 'pp' });
                ws.send({ opcode: R.OP.CONT, payload: 'mented ✓', fin: true });
                const pong = await ws.nextFrame();
                assert.equal(pong.opcode, R.OP.PONG);
                assert.equal(pong.payload.toString(), 'pp');
                assert.equal(await ws.nextText(), '4fragmented ✓');
            } finally {
                ws.destroy();
            }
            await healthy();
        });

        it('garbage bytes right after the 101: the connection is closed', T, async () => {
            for (const junk of [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])]) {
                const { ws } = await R.eioWebSocket(port);
                try {
                    ws.sendRaw(junk);
                    const c = await ws.waitClose(3000);
                    assert.ok(c.tcpClosed, 'the TCP connection is closed');
                    if (c.code !== null) assert.equal(c.code, 1002);
                } finally {
                    ws.destroy();
                }
            }
            await healthy();
        });

        it('the Engine.IO close packet (1) over WebSocket closes the session', T, async (t) => {
            const { ws } = await R.eioWebSocket(port);
            try {
                ws.sendText('1');
                let c;
                try {
                    c = await ws.waitClose(REF ? 500 : 3000);
                } catch (err) {
                    // The reference ignores `1` over WebSocket; protocol.md §27 says close.
                    if (REF) {
                        t.diagnostic('reference engine.io ignores 1 over WebSocket (protocol.md §27 requires close)');
                        return;
                    }
                    throw err;
                }
                assert.ok(c.tcpClosed);
            } finally {
                ws.destroy();
            }
            await healthy();
        });

        for (const [name, text] of [
            ['an unknown packet type', '9x'],
            ['an empty text frame', ''],
            ['a client ping (2) under EIO=4', '2'],
        ]) {
            it(`${name} over WebSocket closes the session`, T, async () => {
                await expectWsClose(port, (ws) => ws.sendText(text), undefined);
                await healthy();
            });
        }
    });

    describe('WebSocket upgrade (protocol.md §E, §F)', () => {
        it('a WebSocket with an unknown sid gets 400 before any 101', T, async () => {
            const { response, ws } = await R.wsConnect(port, R.eioPath({ EIO: 4, transport: 'websocket', sid: 'AAAAAAAAAAAAAAAAAAAA' }));
            ws?.destroy();
            assert.ok(response, 'an HTTP answer');
            assert.equal(response.status, 400);
            assert.equal(ws, null);
            assert.equal(response.text, 'Session ID unknown');
            await healthy();
        });

        it('a WebSocket request with a bad EIO or transport never opens a session', T, async () => {
            for (const params of [{ EIO: 3, transport: 'websocket' }, { EIO: 5, transport: 'websocket' }, { transport: 'websocket' }, { EIO: 4, transport: 'foo' }, { EIO: 4 }]) {
                const { response, ws } = await R.wsConnect(port, R.eioPath(params));
                try {
                    assert.ok(response === null || response.status === 101 || response.status === 400, `${JSON.stringify(params)}: ${response?.status}`);
                    if (ws) {
                        // Upgraded first: then it must be closed without an open packet.
                        const f = await ws.nextFrame(3000);
                        assert.ok(f === null || !(f.opcode === R.OP.TEXT && f.payload.toString().startsWith('0')), `${JSON.stringify(params)}: got an open packet`);
                        assert.ok(await ws.conn.waitClosed(3000), `${JSON.stringify(params)}: closed`);
                    }
                } finally {
                    ws?.destroy();
                }
            }
            await healthy();
        });

        it('a frame other than 2probe or 5 during the upgrade closes the new WebSocket; polling goes on', T, async () => {
            for (const probeFirst of [false, true]) {
                const h = await R.pollingHandshake(port);
                const { ws } = await R.eioWebSocket(port, { sid: h.sid });
                try {
                    if (probeFirst) {
                        ws.sendText('2probe');
                        assert.equal(await ws.nextText(), '3probe');
                    }
                    ws.sendText('4not yet');
                    const c = await ws.waitClose(3000);
                    assert.ok(c.tcpClosed);
                } finally {
                    ws.destroy();
                }
                const p = await R.pollPost(port, h.sid, '4still polling');
                assert.equal(p.status, 200);
                let got = [];
                while (!got.includes('4still polling')) {
                    const g = await R.pollGet(port, h.sid);
                    assert.equal(g.status, 200);
                    got = got.concat(R.decodePayload(g.text));
                    assert.ok(got.every((x) => x === '6' || x === '4still polling'), `polling got ${JSON.stringify(got)}`);
                }
            }
            await healthy();
        });

        it(`an upgrade not completed within upgradeTimeout (${UPGRADE_TIMEOUT} ms) is closed; polling goes on`, T, async () => {
            const h = await R.pollingHandshake(port);
            const { ws } = await R.eioWebSocket(port, { sid: h.sid });
            const t0 = performance.now();
            try {
                ws.sendText('2probe');
                assert.equal(await ws.nextText(), '3probe');
                const c = await ws.waitClose(3000);
                const elapsed = (c.frame ? c.frame.at : c.closedAt) - t0;
                assert.ok(elapsed >= UPGRADE_TIMEOUT - 50 && elapsed <= UPGRADE_TIMEOUT + 300, `closed after ${elapsed.toFixed(0)} ms`);
            } finally {
                ws.destroy();
            }
            assert.equal((await R.pollPost(port, h.sid, '4polling')).status, 200);
            let got = [];
            while (!got.includes('4polling')) got = got.concat(R.decodePayload((await R.pollGet(port, h.sid)).text));
            await healthy();
        });

        it('a second WebSocket for an already upgraded session is accepted then closed; the first goes on', T, async () => {
            const h = await R.pollingHandshake(port);
            const { ws } = await R.eioWebSocket(port, { sid: h.sid });
            try {
                ws.sendText('2probe');
                assert.equal(await ws.nextText(), '3probe');
                ws.sendText('5');
                for (const sid of [h.sid]) {
                    const second = await R.wsConnect(port, R.eioPath({ EIO: 4, transport: 'websocket', sid }));
                    assert.equal(second.response.status, 101, 'protocol.md §25: accept, then close');
                    const c = await second.ws.waitClose(3000);
                    assert.ok(c.tcpClosed);
                    second.ws.destroy();
                }
                ws.sendText('4first still works');
                assert.equal(await ws.nextText(), '4first still works');
            } finally {
                ws.destroy();
            }
            // The same for a session that started on WebSocket.
            const { ws: direct, open } = await R.eioWebSocket(port);
            try {
                const second = await R.wsConnect(port, R.eioPath({ EIO: 4, transport: 'websocket', sid: open.sid }));
                assert.equal(second.response.status, 101);
                assert.ok((await second.ws.waitClose(3000)).tcpClosed);
                second.ws.destroy();
                direct.sendText('4direct still works');
                assert.equal(await direct.nextText(), '4direct still works');
            } finally {
                direct.destroy();
            }
            await healthy();
        });
    });
});

describe('slow request headers (--header-timeout 1000)', () => {
    const HT = 1000;
    let srv;
    before(async () => {
        srv = await startEioEcho(['--header-timeout', String(HT)]);
    });
    after(() => srv?.stop());

    it('headers trickled a byte at a time are cut off at the header timeout', T, async () => {
        const c = await R.RawConn.connect(srv.port);
        const t0 = performance.now();
        const req = R.buildRequest({ path: q({}), headers: { 'User-Agent': 'slowloris' } });
        let i = 0;
        // One byte every 250 ms: an idle timer that restarts on every byte never fires.
        const timer = setInterval(() => {
            if (i < req.length) c.write(req.subarray(i, ++i));
        }, 250);
        try {
            const res = await c.readHttpResponse(HT + 3000).catch(() => null);
            assert.ok(res === null || res.status === 408 || res.status === 400, `answered ${res?.status}`);
            assert.ok(await c.waitEnded(HT + 3000), 'connection closed');
            const elapsed = (c.closedAt ?? performance.now()) - t0;
            assert.ok(elapsed >= HT - 200 && elapsed <= HT + 1000, `closed after ${elapsed.toFixed(0)} ms`);
            assert.ok(i < req.length, 'the request never completed');
        } finally {
            clearInterval(timer);
            c.destroy();
        }
        srv.assertAlive();
        await assertEchoWorks(srv.port);
    });

    it('a connection that sends nothing is closed at the header timeout', T, async () => {
        const c = await R.RawConn.connect(srv.port);
        const t0 = performance.now();
        try {
            assert.ok(await c.waitEnded(HT + 3000), 'connection closed');
            const elapsed = performance.now() - t0;
            assert.ok(elapsed <= HT + 1000, `closed after ${elapsed.toFixed(0)} ms`);
        } finally {
            c.destroy();
        }
    });

    it('the header timeout does not cut a long-poll GET or an idle WebSocket', T, async () => {
        const h = await R.pollingHandshake(srv.port);
        const pending = R.pollGet(srv.port, h.sid, { timeoutMs: 5000 });
        const { ws } = await R.eioWebSocket(srv.port);
        try {
            await R.sleep(HT + 500);
            assert.equal((await R.pollPost(srv.port, h.sid, '4late')).status, 200);
            const g = await pending;
            assert.equal(g.status, 200);
            assert.deepEqual(R.decodePayload(g.text), ['4late']);
            ws.sendText('4idle ws');
            assert.equal(await ws.nextText(), '4idle ws');
        } finally {
            ws.destroy();
        }
    });
});
