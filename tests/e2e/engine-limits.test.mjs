// sockeye-only: the per-connection output queue limit (--max-output). A peer that sends
// echo requests but never reads its answers must be disconnected once its queued output
// passes the limit, the server's memory must stay bounded meanwhile, and other clients
// must keep being served. Skipped under SOCKEYE_REF=1 (the reference has no such limit).
//
// Server: $SOCKEYE_EIO_ECHO (default $top_builddir/examples/eio_echo).
// SOCKEYE_E2E_MAX_RSS_GROWTH_MB (default 64) bounds the allowed RSS growth; sanitizer
// builds may need ASAN_OPTIONS=quarantine_size_mb=16 or a larger bound.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EioClient, assertEchoWorks } from './lib/eio.mjs';
import * as R from './lib/raw.mjs';
import { REF, REF_SKIP, eioEchoCommand, startEioEcho } from './lib/server.mjs';

const MAX_OUTPUT = 1024 * 1024;
const MSG = 64 * 1024; // bytes per echo request
const SEND_LIMIT = 64 * 1024 * 1024; // give up after this much without a disconnect
const RSS_GROWTH = Number(process.env.SOCKEYE_E2E_MAX_RSS_GROWTH_MB || 64) * 1024 * 1024;
const T = { timeout: 30000, skip: REF_SKIP };
const MiB = (n) => `${(n / 1048576).toFixed(1)} MiB`;

/** Samples the server's RSS every 50 ms; .max is the highest seen. */
function rssSampler(srv) {
    const s = { max: 0, timer: null };
    const sample = async () => {
        const v = await srv.rssBytes();
        if (v !== null && v > s.max) s.max = v;
    };
    s.timer = setInterval(sample, 50);
    s.stop = async () => {
        clearInterval(s.timer);
        await sample();
        return s.max;
    };
    return s;
}

/** Resolves 'drain', 'close' or 'stall' (nothing within `ms`), removing its listeners. */
function waitWritable(sock, ms) {
    return new Promise((resolve) => {
        const finish = (why) => {
            clearTimeout(timer);
            sock.off('drain', onDrain);
            sock.off('close', onClose);
            resolve(why);
        };
        const onDrain = () => finish('drain');
        const onClose = () => finish('close');
        const timer = setTimeout(() => finish('stall'), ms);
        sock.on('drain', onDrain);
        sock.on('close', onClose);
    });
}

/** A well-behaved client echoing a small message every 20 ms; records round-trip times. */
function backgroundEcho(port) {
    const bg = { rtts: [], errors: [], running: true };
    bg.done = (async () => {
        const c = await EioClient.open(`http://127.0.0.1:${port}`, { transports: ['websocket'] });
        bg.client = c;
        try {
            for (let i = 0; bg.running; i++) {
                const t0 = performance.now();
                const got = await c.echo(`bg-${i}`, 5000);
                if (got !== `bg-${i}`) throw new Error(`background echo mismatch: ${got}`);
                bg.rtts.push(performance.now() - t0);
                await R.sleep(20);
            }
        } catch (err) {
            bg.errors.push(err);
        } finally {
            c.close();
        }
    })();
    bg.stop = async () => {
        bg.running = false;
        await bg.done;
        return bg;
    };
    return bg;
}

it('the server under test exists', () => {
    eioEchoCommand();
});

describe(`output queue limit (--max-output ${MAX_OUTPUT})`, () => {
    let srv;
    before(async () => {
        if (REF) return;
        srv = await startEioEcho(['--max-output', String(MAX_OUTPUT)]);
    });
    after(() => srv?.stop());

    it('a WebSocket peer that never reads is disconnected; memory stays bounded; others are served', T, async (t) => {
        const bg = backgroundEcho(srv.port);
        await R.sleep(100);
        const rss0 = await srv.rssBytes();
        assert.ok(rss0 !== null, 'can read the server RSS from /proc');
        const rss = rssSampler(srv);

        const { ws } = await R.eioWebSocket(srv.port);
        const sock = ws.conn.sock;
        sock.pause(); // never read: the server's answers pile up
        const frame = R.encodeFrame({ opcode: R.OP.TEXT, payload: `4${'s'.repeat(MSG - 1)}` });
        let sent = 0;
        let writeFailed = null;
        let stalled = false;
        const deadline = performance.now() + 15000;
        try {
            sock.on('error', (err) => (writeFailed ??= err));
            while (sent < SEND_LIMIT && performance.now() < deadline && !sock.destroyed && !writeFailed) {
                const more = sock.write(frame);
                sent += MSG;
                if (!more) {
                    // Wait for the server to read more of our requests (or to drop us).
                    const r = await waitWritable(sock, 3000);
                    if (r === 'stall') {
                        stalled = true;
                        break;
                    }
                    if (r !== 'drain') break;
                }
            }
            // Read what is there: the stream must end (close frame, FIN or reset) well before
            // all the answers arrive.
            let received = 0;
            sock.on('data', (d) => (received += d.length));
            sock.resume();
            const closed = await ws.conn.waitClosed(5000);
            const rssMax = await rss.stop();
            await R.sleep(200); // the background client must keep going afterwards too
            await bg.stop();
            t.diagnostic(
                `sent ${MiB(sent)}, received ${MiB(received)}, closed ${closed}, write error ${writeFailed?.code}, ` +
                    `RSS ${MiB(rss0)} -> max ${MiB(rssMax)}, background round trips ${bg.rtts.length} (max ${Math.max(...bg.rtts).toFixed(0)} ms)`,
            );

            assert.ok(
                closed || writeFailed,
                `the server did not disconnect the slow reader (sent ${MiB(sent)}, stalled: ${stalled}, received ${MiB(received)})`,
            );
            assert.ok(received < sent, `received ${MiB(received)} of ${MiB(sent)}: the answers must have been cut off`);
            assert.ok(rssMax - rss0 < RSS_GROWTH, `server RSS grew by ${MiB(rssMax - rss0)} (from ${MiB(rss0)})`);
            assert.deepEqual(bg.errors, [], 'the background client kept working');
            assert.ok(bg.rtts.length >= 5, `background client made only ${bg.rtts.length} round trips`);
            assert.ok(Math.max(...bg.rtts) < 2000, `background round trip took ${Math.max(...bg.rtts).toFixed(0)} ms`);
        } finally {
            bg.running = false;
            await rss.stop();
            ws.destroy();
        }
        srv.assertAlive();
        await assertEchoWorks(srv.port);
    });

    it('a polling session whose answers are never fetched is closed past the limit; memory stays bounded', T, async (t) => {
        const bg = backgroundEcho(srv.port);
        await R.sleep(100);
        const rss0 = await srv.rssBytes();
        const rss = rssSampler(srv);
        const h = await R.pollingHandshake(srv.port);
        const body = `4${'p'.repeat(MSG - 1)}`;
        let posted = 0;
        let refused = null;
        try {
            // Never GET: every echo stays queued on the server.
            while (posted < 16 * MAX_OUTPUT) {
                const res = await R.pollPost(srv.port, h.sid, body);
                if (!res || res.status !== 200) {
                    refused = res;
                    break;
                }
                posted += MSG;
            }
            const rssMax = await rss.stop();
            await R.sleep(200); // the background client must keep going afterwards too
            await bg.stop();
            t.diagnostic(`posted ${MiB(posted)} before ${refused?.status}; RSS ${MiB(rss0)} -> max ${MiB(rssMax)}`);
            assert.ok(refused, `the session was still open after ${MiB(posted)} of unread answers`);
            assert.ok(posted <= 4 * MAX_OUTPUT, `closed only after ${MiB(posted)} queued`);
            // Closed: either unknown now, or one last GET with the close packet and no backlog.
            const g = await R.pollGet(srv.port, h.sid, { timeoutMs: 2000 });
            if (g.status === 200) {
                assert.ok(g.body.length < MAX_OUTPUT, `the closed session still delivered ${MiB(g.body.length)}`);
                assert.equal(R.decodePayload(g.text).at(-1), '1');
            } else {
                assert.equal(g.status, 400);
                assert.deepEqual(JSON.parse(g.text), { code: 1, message: 'Session ID unknown' });
            }
            assert.ok(rssMax - rss0 < RSS_GROWTH, `server RSS grew by ${MiB(rssMax - rss0)}`);
            assert.deepEqual(bg.errors, []);
        } finally {
            bg.running = false;
            await rss.stop();
        }
        srv.assertAlive();
        await assertEchoWorks(srv.port);
    });

    it('a client that reads normally is never cut off by the limit (8 MiB of echoes)', T, async () => {
        const { ws } = await R.eioWebSocket(srv.port);
        try {
            const payload = `4${'n'.repeat(MSG - 1)}`;
            // Keep at most 8 requests (512 KiB) in flight: well under the limit.
            let inFlight = 0;
            let done = 0;
            const total = 128;
            let next = 0;
            while (done < total) {
                while (inFlight < 8 && next < total) {
                    ws.sendText(payload);
                    inFlight++;
                    next++;
                }
                const m = await ws.nextText(5000);
                if (m === '2') {
                    ws.sendText('3');
                    continue;
                }
                assert.equal(m.length, MSG);
                inFlight--;
                done++;
            }
        } finally {
            ws.destroy();
        }
    });
});
