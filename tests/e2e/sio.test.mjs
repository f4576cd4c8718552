// Socket.IO end-to-end: events, acks (both directions, with timeouts), binary, auth and
// namespaces, driven by the real socket.io-client from npm over polling only, WebSocket
// only and the default polling → WebSocket upgrade.
//
//   SOCKEYE_REF=1 SOCKEYE_SIO_ECHO="node tests/e2e/ref/echo_server.mjs" node --test tests/e2e/sio.test.mjs
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Clients, MODE_NAMES, normalizeBinary, once, sleep, transportName, waitUpgraded, useEchoServer } from './lib/sio.mjs';

const T = { timeout: 15000 };

// Argument lists covering the JSON value space: numbers, strings with escapes and
// non-ASCII (2-, 3- and 4-byte UTF-8), empty containers, nulls, deep nesting.
const MIXED = [
    [],
    [null],
    [0, 1, -1, 42, 3.5, -273.15, 1e21, 1e-7, 2 ** 53 - 1, Number.MIN_SAFE_INTEGER],
    [true, false],
    ['', 'plain', 'héllo wörld', '日本語テキスト', 'emoji 🎉🚀', 'quote " backslash \\ slash /'],
    ['controls \n\r\t\b\f \u0001 \u001e \u001f end', '\u2028\u2029', '<b>&amp;</b>'],
    [{}, [], [[]], [{}], { a: {} }, { a: [] }, [[], {}]],
    [{ nested: { deeper: { deepest: [1, [2, [3, [4, { five: null }]]]] } }, list: [{ x: 1 }, { y: [true, false, null] }] }],
    [{ ключ: 'значение', '': 'empty key', 'with space': 1, '"quoted"': 2, z: 0, a: 1 }],
    [[1, 'two', { three: 3 }, [4], null, true, false, 0, '', {}, []]],
    ['x'.repeat(100000), { big: 'ü'.repeat(50000) }],
];

/** deepEqual plus identical JSON text (so key order is preserved too). */
function assertSameJson(actual, expected, msg) {
    assert.deepEqual(actual, expected, msg);
    assert.equal(JSON.stringify(actual), JSON.stringify(expected), msg);
}

const env = useEchoServer();

for (const mode of MODE_NAMES) {
    describe(`over ${mode}`, () => {
        test('connect: the server emits "auth" with {} when no auth is given', T, async () => {
            const s = await env.clients.connect(mode);
            assert.equal(typeof s.id, 'string');
            assert.ok(s.id.length > 0);
            assert.deepEqual(await s.inbox.next('auth'), [{}]);
        });

        test('auth echo: io(url, {auth: {token: "abc"}}) receives auth {token: "abc"}', T, async () => {
            const s = await env.clients.connect(mode, { auth: { token: 'abc' } });
            assertSameJson(await s.inbox.next('auth'), [{ token: 'abc' }]);
            const t = await env.clients.connect(mode, { auth: { token: 'ü🎉', n: [1, { deep: null }], ok: true } });
            assertSameJson(await t.inbox.next('auth'), [{ token: 'ü🎉', n: [1, { deep: null }], ok: true }]);
        });

        test('events with mixed JSON come back as message-back, in order', T, async () => {
            const s = await env.clients.connect(mode);
            for (const args of MIXED) s.emit('message', ...args);
            for (const args of MIXED) {
                assertSameJson(await s.inbox.next('message-back'), args, `args ${JSON.stringify(args).slice(0, 80)}`);
            }
        });

        test('200 events in a burst arrive once each and in order', T, async () => {
            const s = await env.clients.connect(mode);
            const n = 200;
            for (let i = 0; i < n; i++) s.emit('message', i, `n${i}`);
            for (let i = 0; i < n; i++) assert.deepEqual(await s.inbox.next('message-back'), [i, `n${i}`]);
            await sleep(50);
            assert.deepEqual(s.inbox.take('message-back'), []);
        });

        test('client → server ack: message-with-ack acks with all arguments', T, async () => {
            const s = await env.clients.connect(mode);
            const replies = await Promise.all(
                MIXED.map(
                    (args) =>
                        new Promise((resolve, reject) => {
                            s.timeout(5000).emit('message-with-ack', ...args, (err, ...reply) =>
                                err ? reject(err) : resolve(reply),
                            );
                        }),
                ),
            );
            MIXED.forEach((args, i) => assertSameJson(replies[i], args));
            // emitWithAck resolves with the first ack argument.
            assert.deepEqual(await s.timeout(5000).emitWithAck('echo', { v: [1, 'ü'] }), { v: [1, 'ü'] });
            assert.equal(await s.timeout(5000).emitWithAck('join', 'room-a'), 'room-a');
            assert.equal(await s.timeout(5000).emitWithAck('leave', 'room-a'), 'room-a');
        });

        test('client → server ack timeout: an event the server does not ack times out', T, async () => {
            const s = await env.clients.connect(mode);
            const started = Date.now();
            await assert.rejects(s.timeout(300).emitWithAck('message', 'no ack for this'), /timed out/);
            assert.ok(Date.now() - started >= 250, 'timed out too early');
            // The event itself was handled as a plain event.
            assert.deepEqual(await s.inbox.next('message-back'), ['no ack for this']);
            assert.equal(await s.timeout(2000).emitWithAck('echo', 'still alive'), 'still alive');
        });

        test('server → client ack via ask: the client acks, the server reports "asked"', T, async () => {
            const s = await env.clients.connect(mode);
            s.on('please-ack', (...args) => {
                const ack = args.pop();
                assert.equal(typeof ack, 'function', 'server event must carry an ack id');
                ack('pong', ...args);
            });
            s.emit('ask', 'please-ack', 1, { a: [2, null] }, 'três', []);
            assertSameJson(await s.inbox.next('asked'), ['pong', 1, { a: [2, null] }, 'três', []]);
            // Ack with no arguments.
            s.on('empty-ack', (ack) => ack());
            s.emit('ask', 'empty-ack');
            assert.deepEqual(await s.inbox.next('asked'), []);
        });

        test('server → client ack timeout: no ack in 2 s gives asked-timeout; a late ack is ignored', T, async () => {
            const s = await env.clients.connect(mode);
            const lateAcks = [];
            s.on('no-ack', () => {});
            s.on('late-ack', (...args) => {
                const ack = args.pop();
                lateAcks.push(sleep(2300).then(() => ack('too late')));
            });
            const started = Date.now();
            s.emit('ask', 'no-ack', 1);
            s.emit('ask', 'late-ack', 2);
            const noAck = await s.inbox.next('no-ack', 3000);
            assert.equal(noAck.length, 2);
            assert.equal(noAck[0], 1);
            assert.equal(typeof noAck[1], 'function', 'the asked event must carry an ack id');
            assert.deepEqual(await s.inbox.next('asked-timeout', 4000), []);
            assert.deepEqual(await s.inbox.next('asked-timeout', 4000), []);
            const elapsed = Date.now() - started;
            assert.ok(elapsed >= 1900, `asked-timeout after ${elapsed} ms, expected ~2000`);
            await Promise.all(lateAcks);
            assert.equal(await s.timeout(2000).emitWithAck('echo', 'barrier'), 'barrier');
            assert.deepEqual(s.inbox.take('asked'), [], 'a late ack must not produce "asked"');
        });

        test('binary client → server: Buffers nested in objects and arrays come back', T, async () => {
            const s = await env.clients.connect(mode);
            const big = randomBytes(70000);
            const args = [
                { a: Buffer.from([1, 2, 3]), nested: [Buffer.from([]), { b: big, s: 'str' }], n: null },
                Buffer.from([0xff, 0x00, 0x1e, 0x0a]),
                'text between',
                [Buffer.from('héllo'), [Buffer.from([7])]],
            ];
            s.emit('message', ...args);
            const got = normalizeBinary(await s.inbox.next('message-back'));
            assert.deepEqual(got, args);
            // Binary in an ack (BINARY_ACK from the server).
            const reply = await new Promise((resolve, reject) =>
                s.timeout(5000).emit('message-with-ack', ...args, (err, ...r) => (err ? reject(err) : resolve(r))),
            );
            assert.deepEqual(normalizeBinary(reply), args);
            assert.deepEqual(normalizeBinary(await s.timeout(5000).emitWithAck('echo', big)), big);
        });

        test('binary server → client event with ack, client acks with binary', T, async () => {
            const s = await env.clients.connect(mode);
            const b1 = randomBytes(16);
            const b2 = randomBytes(3000);
            s.on('bin-ask', (...args) => {
                const ack = args.pop();
                ack({ echoed: args }, Buffer.from([9, 8, 7]), 'tail');
            });
            s.emit('ask', 'bin-ask', { buf: b1, list: [b2, 'x', { inner: b1 }] }, b2);
            const [event] = await s.inbox.next('bin-ask');
            assert.deepEqual(normalizeBinary(event), { buf: b1, list: [b2, 'x', { inner: b1 }] });
            const asked = normalizeBinary(await s.inbox.next('asked'));
            assert.deepEqual(asked, [
                { echoed: [{ buf: b1, list: [b2, 'x', { inner: b1 }] }, b2] },
                Buffer.from([9, 8, 7]),
                'tail',
            ]);
        });

        test('/custom namespace echoes its auth', T, async () => {
            const s = await env.clients.connect(mode, { auth: { token: 'xyz', role: 'custom' } }, '/custom');
            assertSameJson(await s.inbox.next('auth'), [{ token: 'xyz', role: 'custom' }]);
            const plain = await env.clients.connect(mode, {}, '/custom');
            assert.deepEqual(await plain.inbox.next('auth'), [{}]);
        });

        test('/ and /custom multiplexed on one connection, each with its own auth', T, async () => {
            const m = env.clients.manager(mode);
            const root = env.clients.socketOf(m, '/');
            const custom = env.clients.socketOf(m, '/custom');
            root.auth = { who: 'root' };
            custom.auth = { who: 'custom' };
            await Clients.connectSocket(root);
            await Clients.connectSocket(custom);
            assert.deepEqual(await root.inbox.next('auth'), [{ who: 'root' }]);
            assert.deepEqual(await custom.inbox.next('auth'), [{ who: 'custom' }]);
            assert.notEqual(root.id, custom.id);
            assert.equal(await root.timeout(3000).emitWithAck('echo', 1), 1);
            // Leaving /custom keeps / working on the same Engine.IO connection.
            custom.disconnect();
            assert.equal(await root.timeout(3000).emitWithAck('echo', 2), 2);
            assert.deepEqual(custom.inbox.take(), []);
        });

        test('unknown namespace: connect_error "Invalid namespace", connection stays usable', T, async () => {
            const lone = env.clients.create(mode, {}, '/nope');
            const loneFailed = once(lone, 'connect_error');
            lone.connect();
            const [err] = await loneFailed;
            assert.equal(err.message, 'Invalid namespace');
            assert.equal(lone.connected, false);

            // On a shared connection: / is joined, then an unknown namespace is refused
            // without closing the Engine.IO connection.
            const m = env.clients.manager(mode);
            const good = env.clients.socketOf(m, '/');
            const bad = env.clients.socketOf(m, '/does-not-exist');
            await Clients.connectSocket(good);
            const engineId = m.engine.id;
            const failed = once(bad, 'connect_error');
            bad.connect();
            assert.equal((await failed)[0].message, 'Invalid namespace');
            assert.equal(await good.timeout(3000).emitWithAck('echo', 'ok'), 'ok');
            assert.equal(m.engine.id, engineId, 'the Engine.IO connection was replaced');
            assert.equal(m.engine.readyState, 'open');
        });

        if (mode === 'upgrade') {
            test('the default path upgrades to WebSocket and keeps working', T, async () => {
                const s = await env.clients.connect(mode);
                await waitUpgraded(s);
                assert.equal(transportName(s), 'websocket');
                s.emit('message', 'after upgrade', { ok: true });
                assert.deepEqual(await s.inbox.next('message-back'), ['after upgrade', { ok: true }]);
            });
        }
    });
}
