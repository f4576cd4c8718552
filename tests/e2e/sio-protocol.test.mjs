// Socket.IO protocol checks over a raw Engine.IO connection (engine.io-client from npm; the
// test writes and reads Socket.IO packets as text): exact wire forms of CONNECT replies,
// events and acks; packets that must close the connection (EVENT before CONNECT, invalid
// packets, a second CONNECT); connectTimeout; and an oversized message (> --max-payload)
// that disconnects only its sender.
//
//   SOCKEYE_REF=1 SOCKEYE_SIO_ECHO="node tests/e2e/ref/echo_server.mjs" node --test tests/e2e/sio-protocol.test.mjs
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startSioEcho } from './lib/server.mjs';
import { barrier, Clients, MODE_NAMES, once, rawEngine, waitUpgraded, within } from './lib/sio.mjs';

const T = { timeout: 15000 };
const RAW_MODES = ['polling', 'websocket'];
const MAX_PAYLOAD = 10000;
const CONNECT_TIMEOUT = 300;
const PING_INTERVAL = 250;
const PING_TIMEOUT = 400;
const SID = /^[A-Za-z0-9_-]{20}$/;

let server; // --max-payload 10000
let timeoutServer; // --connect-timeout 300 --ping-interval 250 --ping-timeout 400
let clients;
const raws = new Set();

before(async () => {
    [server, timeoutServer] = await Promise.all([
        startSioEcho(['--max-payload', String(MAX_PAYLOAD)]),
        startSioEcho([
            '--connect-timeout',
            String(CONNECT_TIMEOUT),
            '--ping-interval',
            String(PING_INTERVAL),
            '--ping-timeout',
            String(PING_TIMEOUT),
        ]),
    ]);
    clients = new Clients(`http://127.0.0.1:${server.port}`);
});

afterEach(() => {
    clients.closeAll();
    for (const r of raws) r.close();
    raws.clear();
    server.assertAlive();
    timeoutServer.assertAlive();
});

after(async () => {
    clients?.closeAll();
    for (const r of raws) r.close();
    await Promise.all([server?.stop(), timeoutServer?.stop()]);
});

async function raw(mode, srv = server) {
    const r = await rawEngine(`http://127.0.0.1:${srv.port}`, mode);
    raws.add(r);
    return r;
}

/** CONNECT to `nsp` ("" for "/") and check the reply and the "auth" emit that follows. */
async function rawConnect(r, nsp = '', auth) {
    const prefix = nsp ? `${nsp},` : '';
    r.send(`0${prefix}${auth === undefined ? '' : JSON.stringify(auth)}`);
    const reply = await r.nextMessage();
    assert.ok(reply.startsWith(`0${prefix}{`), `CONNECT reply: ${reply}`);
    const body = JSON.parse(reply.slice(1 + prefix.length));
    assert.deepEqual(Object.keys(body), ['sid'], `CONNECT reply carries only sid (no recovery): ${reply}`);
    assert.match(body.sid, SID);
    assert.notEqual(body.sid, r.id, 'the Socket.IO id must not be the Engine.IO sid');
    assert.equal(await r.nextMessage(), `2${prefix}["auth",${JSON.stringify(auth ?? {})}]`);
    return body.sid;
}

/** The server must close the Engine.IO connection soon. */
async function assertClosed(r, what, ms = 3000) {
    await within(r.closed, ms, `the server to close the connection after ${what}`);
}

for (const mode of RAW_MODES) {
    describe(`raw Engine.IO over ${mode}`, () => {
        test('wire forms: CONNECT reply, auth emit, compact event, ack, namespaces', T, async () => {
            const r = await raw(mode);
            await rawConnect(r);
            r.send('2["message",1,"2",{"3":[true]},null,[],{}]');
            assert.equal(await r.nextMessage(), '2["message-back",1,"2",{"3":[true]},null,[],{}]');
            r.send('2["message"]');
            assert.equal(await r.nextMessage(), '2["message-back"]');
            r.send('27["echo","x"]');
            assert.equal(await r.nextMessage(), '37["x"]');
            r.send('2123["message-with-ack",{"b":1,"a":[2]},"ü"]');
            assert.equal(await r.nextMessage(), '3123[{"b":1,"a":[2]},"ü"]');
            // An ACK with an unknown id is ignored.
            r.send('3999["nobody asked"]');
            r.send('28["echo",1]');
            assert.equal(await r.nextMessage(), '38[1]');
            await rawConnect(r, '/custom', { token: 't' });
            r.send('0/nope,');
            assert.equal(await r.nextMessage(), '4/nope,{"message":"Invalid namespace"}');
            r.send('29["echo","open"]');
            assert.equal(await r.nextMessage(), '39["open"]');
            // Client-side DISCONNECT of /custom: nothing is sent back, / keeps working.
            r.send('1/custom,');
            r.send('210["echo","still"]');
            assert.equal(await r.nextMessage(), '310["still"]');
            assert.equal(r.closedAt, null);
        });

        test('binary wire form: BINARY_EVENT with placeholders and attachments', T, async () => {
            const r = await raw(mode);
            await rawConnect(r);
            r.send('51-["message",{"_placeholder":true,"num":0},"t"]');
            r.send(Buffer.from([1, 2, 3]));
            const header = await r.nextMessage();
            assert.equal(header, '51-["message-back",{"_placeholder":true,"num":0},"t"]');
            const att = await r.nextMessage();
            assert.deepEqual(Buffer.from(att), Buffer.from([1, 2, 3]));
            // Two attachments in; the echo acks its first argument only: one attachment out.
            r.send('52-5["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
            r.send(Buffer.from([9]));
            r.send(Buffer.from([8, 7]));
            assert.equal(await r.nextMessage(), '61-5[{"_placeholder":true,"num":0}]');
            assert.deepEqual(Buffer.from(await r.nextMessage()), Buffer.from([9]));
        });

        const beforeConnect = [
            ['an EVENT', '2["message","x"]'],
            ['an EVENT with an ack id', '21["echo","x"]'],
            ['an EVENT with an object', '2{}'],
            ['a DISCONNECT', '1'],
            ['an ACK', '31[]'],
        ];
        for (const [name, packet] of beforeConnect) {
            test(`${name} (4${packet}) before CONNECT closes the connection`, T, async () => {
                const r = await raw(mode);
                r.send(packet);
                await assertClosed(r, `${packet} before CONNECT`);
                assert.deepEqual(r.messages, [], 'nothing is answered');
            });
        }

        const invalid = [
            ['an EVENT with an object', '2{}'],
            ['junk before the array', '2abc["x"]'],
            ['an empty event array', '2[]'],
            ['a reserved event name', '2["connect"]'],
            ['an unknown packet type', '9["message"]'],
            ['an empty packet', ''],
            ['a CONNECT_ERROR from the client', '4{"message":"no"}'],
            ['a CONNECT_ERROR with junk', '4abc'],
            ['truncated JSON', '2["message",'],
            ['an EVENT for a namespace not joined', '2/custom,["message"]'],
            ['a DISCONNECT for a namespace not joined', '1/custom,'],
            ['a second CONNECT to /', '0'],
            ['too many attachments', '5999-["message"]'],
        ];
        for (const [name, packet] of invalid) {
            test(`after CONNECT: ${name} (4${packet}) closes the connection`, T, async () => {
                const r = await raw(mode);
                await rawConnect(r);
                r.send(packet);
                await assertClosed(r, JSON.stringify(packet));
            });
        }

        test('after CONNECT: a binary message without a BINARY header closes the connection', T, async () => {
            const r = await raw(mode);
            await rawConnect(r);
            r.send(Buffer.from([1, 2, 3]));
            await assertClosed(r, 'a stray attachment');
        });

        test('after CONNECT: text while attachments are pending closes the connection', T, async () => {
            const r = await raw(mode);
            await rawConnect(r);
            r.send('51-["message",{"_placeholder":true,"num":0}]');
            r.send('2["message"]');
            await assertClosed(r, 'text instead of an attachment');
        });

        test('a second CONNECT to a joined /custom closes the connection', T, async () => {
            const r = await raw(mode);
            await rawConnect(r, '/custom', { a: 1 });
            r.send('0/custom,');
            await assertClosed(r, 'a second CONNECT to /custom');
        });

        test(`connectTimeout: no CONNECT within ${CONNECT_TIMEOUT} ms closes the connection`, T, async () => {
            const silent = await raw(mode, timeoutServer);
            const refused = await raw(mode, timeoutServer); // only an unknown namespace
            refused.send('0/nope,');
            assert.equal(await refused.nextMessage(), '4/nope,{"message":"Invalid namespace"}');
            const joined = await raw(mode, timeoutServer);
            await rawConnect(joined);

            await assertClosed(silent, 'the connect timeout', 3000);
            const elapsed = silent.closedAt - silent.openedAt;
            assert.ok(elapsed >= CONNECT_TIMEOUT - 50, `closed after ${elapsed} ms: too early`);
            assert.ok(elapsed < CONNECT_TIMEOUT + 1200, `closed after ${elapsed} ms: too late`);
            await assertClosed(refused, 'the connect timeout (an unknown namespace does not count)', 3000);

            // A socket that joined in time stays open well past the timeout.
            await new Promise((res) => setTimeout(res, CONNECT_TIMEOUT + 200));
            assert.equal(joined.closedAt, null);
            joined.send('21["echo","alive"]');
            assert.equal(await joined.nextMessage(), '31["alive"]');
        });
    });
}

test('flags: the handshake advertises --max-payload, --ping-interval and --ping-timeout', T, async () => {
    const a = await raw('websocket');
    assert.equal(a.handshake.maxPayload, MAX_PAYLOAD);
    const b = await raw('polling', timeoutServer);
    assert.equal(b.handshake.pingInterval, PING_INTERVAL);
    assert.equal(b.handshake.pingTimeout, PING_TIMEOUT);
});

for (const mode of MODE_NAMES) {
    test(`over ${mode}: a socket lives through several ${PING_INTERVAL} ms heartbeats`, T, async () => {
        const short = new Clients(`http://127.0.0.1:${timeoutServer.port}`);
        try {
            const s = await short.connect(mode);
            let pings = 0;
            let disconnects = 0;
            s.io.engine.on('ping', () => pings++);
            s.on('disconnect', () => disconnects++);
            await new Promise((res) => setTimeout(res, PING_INTERVAL * 4 + 100));
            assert.ok(pings >= 3, `only ${pings} pings in ${PING_INTERVAL * 4 + 100} ms`);
            assert.equal(s.connected, true);
            assert.equal(await s.timeout(3000).emitWithAck('echo', 'alive'), 'alive');
            assert.equal(disconnects, 0);
        } finally {
            short.closeAll();
        }
    });

    test(`over ${mode}: a message over --max-payload disconnects only its sender`, T, async () => {
        const victim = await clients.connect(mode);
        const others = await Promise.all(MODE_NAMES.map((m) => clients.connect(m)));
        if (mode === 'upgrade') await waitUpgraded(victim);
        // Just under the limit is fine.
        const fits = 'f'.repeat(MAX_PAYLOAD - 100);
        victim.emit('message', fits);
        assert.deepEqual(await victim.inbox.next('message-back'), [fits]);

        const gone = once(victim, 'disconnect', 5000);
        victim.emit('message', 'x'.repeat(MAX_PAYLOAD * 2));
        const [reason] = await gone;
        assert.ok(['transport close', 'transport error'].includes(reason), `disconnect reason "${reason}"`);
        assert.deepEqual(victim.inbox.take('message-back'), []);

        await Promise.all(others.map((s) => barrier(s)));
        for (const s of others) {
            s.emit('message', 'ok');
            assert.deepEqual(await s.inbox.next('message-back'), ['ok']);
        }
        const fresh = await clients.connect(mode);
        assert.equal(await fresh.timeout(5000).emitWithAck('echo', 'fresh'), 'fresh');
    });

    test(`over ${mode}: an oversized binary attachment disconnects only its sender`, T, async () => {
        const victim = await clients.connect(mode);
        const other = await clients.connect(mode);
        if (mode === 'upgrade') await waitUpgraded(victim);
        const gone = once(victim, 'disconnect', 5000);
        victim.emit('message', { big: Buffer.alloc(MAX_PAYLOAD * 2, 7) });
        const [reason] = await gone;
        assert.ok(['transport close', 'transport error'].includes(reason), `disconnect reason "${reason}"`);
        await barrier(other);
    });
}
