// Socket.IO end-to-end: 200 concurrent clients (polling, WebSocket and upgrade mixed) all
// connect, all echo, receive one room broadcast each, and all disconnect, in bounded time;
// the server is still healthy afterwards.
//
//   SOCKEYE_REF=1 SOCKEYE_SIO_ECHO="node tests/e2e/ref/echo_server.mjs" node --test tests/e2e/sio-load.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { barrier, MODE_NAMES, once, within, useEchoServer } from './lib/sio.mjs';

const COUNT = 200;

const env = useEchoServer();

test(`${COUNT} concurrent clients connect, echo, get a broadcast and disconnect`, { timeout: 45000 }, async (t) => {
    const started = Date.now();
    const sockets = await within(
        Promise.all(
            Array.from({ length: COUNT }, (_, i) =>
                env.clients.connect(MODE_NAMES[i % MODE_NAMES.length], { auth: { n: i }, timeout: 20000 }),
            ),
        ),
        25000,
        `${COUNT} connections`,
    );
    const connectedMs = Date.now() - started;
    assert.equal(new Set(sockets.map((s) => s.id)).size, COUNT, 'socket ids must be unique');
    const auths = await Promise.all(sockets.map((s) => s.inbox.next('auth', 10000)));
    auths.forEach((a, i) => assert.deepEqual(a, [{ n: i }]));

    // Everyone echoes at once, each with its own payload.
    const echoes = await within(
        Promise.all(sockets.map((s, i) => s.timeout(15000).emitWithAck('echo', { i, pad: 'x'.repeat(i) }))),
        20000,
        `${COUNT} echoes`,
    );
    echoes.forEach((e, i) => assert.deepEqual(e, { i, pad: 'x'.repeat(i) }));

    // Everyone joins one room; one broadcast reaches all but the sender.
    await Promise.all(sockets.map((s) => s.timeout(15000).emitWithAck('join', 'all')));
    const sender = sockets[0];
    sender.emit('msg', 'all', { hello: 'everyone' });
    await barrier(sender, 10000);
    const received = await Promise.all(sockets.slice(1).map((s) => s.inbox.next('msg', 15000)));
    received.forEach((r) => assert.deepEqual(r, [{ hello: 'everyone' }]));
    await barrier(sender);
    assert.deepEqual(sender.inbox.take('msg'), []);

    // Everyone leaves; the server notices (new clients still work, nothing leaks into them).
    for (const s of sockets) s.disconnect();
    assert.ok(sockets.every((s) => !s.connected));
    const totalMs = Date.now() - started;
    t.diagnostic(`${COUNT} clients: connected in ${connectedMs} ms, done in ${totalMs} ms`);

    for (const mode of MODE_NAMES) {
        const s = await env.clients.connect(mode);
        assert.deepEqual(await s.inbox.next('auth'), [{}]);
        assert.equal(await s.timeout(5000).emitWithAck('echo', mode), mode);
    }
});

test('connect and disconnect churn: 100 short-lived clients in waves of 25', { timeout: 30000 }, async () => {
    for (let wave = 0; wave < 4; wave++) {
        const sockets = await Promise.all(
            Array.from({ length: 25 }, (_, i) => env.clients.connect(MODE_NAMES[(i + wave) % MODE_NAMES.length])),
        );
        await Promise.all(sockets.map((s, i) => s.timeout(10000).emitWithAck('echo', wave * 100 + i)));
        for (const s of sockets) s.disconnect();
    }
    // A client that vanishes without a clean disconnect (engine closed mid-session) is
    // also cleaned up; the server keeps serving.
    const abrupt = await env.clients.connect('websocket');
    const closed = once(abrupt, 'disconnect');
    abrupt.io.engine.close();
    await closed;
    const s = await env.clients.connect('polling');
    assert.equal(await s.timeout(5000).emitWithAck('echo', 'alive'), 'alive');
});
