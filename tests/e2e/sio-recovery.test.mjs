// Socket.IO end-to-end: automatic reconnection after the transport drops (the TCP
// connection is reset under the client, no clean close) and connection state recovery
// (--recovery 60000): the restored socket keeps its id and rooms and receives, in order,
// the room broadcasts it missed while it was away. Every scenario runs over polling only,
// WebSocket only and the default upgrade path.
//
//   SOCKEYE_REF=1 SOCKEYE_SIO_ECHO="node tests/e2e/ref/echo_server.mjs" node --test tests/e2e/sio-recovery.test.mjs
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startSioEcho } from './lib/server.mjs';
import {
    barrier,
    Clients,
    DropAgent,
    dropTransport,
    MODE_NAMES,
    normalizeBinary,
    once,
    transportName,
    waitUpgraded,
} from './lib/sio.mjs';

const T = { timeout: 15000 };
const DROP_REASONS = ['transport close', 'transport error'];

let plain; // server without connection state recovery
let recovering; // server with --recovery 60000
let plainClients;
let recClients;

before(async () => {
    [plain, recovering] = await Promise.all([startSioEcho(), startSioEcho(['--recovery', '60000'])]);
    plainClients = new Clients(`http://127.0.0.1:${plain.port}`);
    recClients = new Clients(`http://127.0.0.1:${recovering.port}`);
});

afterEach(() => {
    plainClients.closeAll();
    recClients.closeAll();
    plain.assertAlive();
    recovering.assertAlive();
});

after(async () => {
    plainClients?.closeAll();
    recClients?.closeAll();
    await Promise.all([plain?.stop(), recovering?.stop()]);
});

/** In upgrade mode, drop the WebSocket after the upgrade (the reconnect upgrades again). */
async function settle(socket) {
    if (socket.mode === 'upgrade') {
        await waitUpgraded(socket);
        assert.equal(transportName(socket), 'websocket');
    }
}

/** Options for a client that reconnects quickly through `agent`. */
function reconnecting(agent) {
    return { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100, agent };
}

async function join(socket, room) {
    assert.equal(await socket.timeout(5000).emitWithAck('join', room), room);
}

/** The data of every 'msg' in the inbox (the recovery offset, last, checked and dropped). */
function takeMsgData(socket, { withOffset }) {
    return socket.inbox.take('msg').map(({ args }) => {
        if (withOffset) {
            assert.equal(args.length, 2, `msg must carry data and an offset: ${JSON.stringify(args)}`);
            assert.equal(typeof args[1], 'string', 'the recovery offset must be a string');
        } else {
            assert.equal(args.length, 1, `msg must carry only its data: ${JSON.stringify(args)}`);
        }
        return normalizeBinary(args[0]);
    });
}

let roomSeq = 0;

for (const mode of MODE_NAMES) {
    describe(`over ${mode}`, () => {
        test('the transport drops: the client reconnects by itself and works again', T, async () => {
            const agent = new DropAgent();
            const s = await plainClients.connect(mode, reconnecting(agent));
            const room = `r${++roomSeq}`;
            await join(s, room);
            const firstId = s.id;
            assert.deepEqual(await s.inbox.next('auth'), [{}]);

            await settle(s);
            const reconnected = once(s, 'connect', 10000);
            const reason = await dropTransport(s, agent);
            if (process.env.DEBUG_REASON) console.log('reason', mode, reason);
            assert.ok(DROP_REASONS.includes(reason), `disconnect reason "${reason}"`);
            await reconnected;
            assert.equal(s.connected, true);
            assert.ok(!s.recovered, 'recovery is off: the socket must not be recovered');
            assert.notEqual(s.id, firstId, 'without recovery the socket gets a new id');
            assert.deepEqual(await s.inbox.next('auth'), [{}], 'the connection handler runs again');

            s.emit('message', 'after reconnect', [1, { two: 2 }]);
            assert.deepEqual(await s.inbox.next('message-back'), ['after reconnect', [1, { two: 2 }]]);

            // A fresh socket is in no room: broadcasts to the old room do not reach it.
            const peer = await plainClients.connect('websocket');
            peer.emit('msg', room, 'to the old room');
            await barrier(peer);
            await barrier(s);
            assert.deepEqual(s.inbox.take('msg'), []);
        });

        test('state recovery: same id, same rooms, missed room broadcasts replayed in order', T, async () => {
            const agent = new DropAgent();
            const s = await recClients.connect(mode, reconnecting(agent));
            const sender = await recClients.connect('websocket');
            const room = `r${++roomSeq}`;
            await join(s, room);
            const firstId = s.id;
            assert.equal(s.recovered, false);
            assert.deepEqual((await s.inbox.next('auth'))[0], {});

            sender.emit('msg', room, 'before');
            await barrier(sender);
            await barrier(s);
            assert.deepEqual(takeMsgData(s, { withOffset: true }), ['before']);

            // The transport drops and stays down while the room gets traffic.
            await settle(s);
            const reconnected = once(s, 'connect', 10000);
            const reason = await dropTransport(s, agent, { outage: true });
            if (process.env.DEBUG_REASON) console.log('reason', mode, reason);
            assert.ok(DROP_REASONS.includes(reason), `disconnect reason "${reason}"`);
            const missed = [];
            for (let i = 0; i < 20; i++) {
                const data = i === 7 ? { i, bin: Buffer.from([1, 2, 3, i]) } : { i, text: `missed ${i} ü` };
                missed.push(data);
                sender.emit('msg', room, data);
            }
            sender.emit('msg', `${room}-other`, 'not for s');
            await barrier(sender);
            agent.restore();

            await reconnected;
            assert.equal(s.recovered, true, 'the socket must be recovered');
            assert.equal(s.id, firstId, 'a recovered socket keeps its id');
            await barrier(s);
            assert.deepEqual(takeMsgData(s, { withOffset: true }), missed, 'missed broadcasts, in order');

            // Still in its room.
            sender.emit('msg', room, 'after');
            await barrier(sender);
            await barrier(s);
            assert.deepEqual(takeMsgData(s, { withOffset: true }), ['after']);
            s.emit('message', 'still', 'works');
            const back = await s.inbox.next('message-back');
            assert.deepEqual(back.slice(0, 2), ['still', 'works']);
        });

        test('state recovery: a second drop is recovered too, with only the new messages', T, async () => {
            const agent = new DropAgent();
            const s = await recClients.connect(mode, reconnecting(agent));
            const sender = await recClients.connect('polling');
            const room = `r${++roomSeq}`;
            await join(s, room);
            const firstId = s.id;
            sender.emit('msg', room, 0);
            await barrier(sender);
            await barrier(s);
            assert.deepEqual(takeMsgData(s, { withOffset: true }), [0]);
            for (let round = 1; round <= 2; round++) {
                await settle(s);
                const reconnected = once(s, 'connect', 10000);
                await dropTransport(s, agent, { outage: true });
                sender.emit('msg', room, round * 10);
                sender.emit('msg', room, round * 10 + 1);
                await barrier(sender);
                agent.restore();
                await reconnected;
                assert.equal(s.recovered, true, `round ${round}: not recovered`);
                assert.equal(s.id, firstId);
                await barrier(s);
                assert.deepEqual(takeMsgData(s, { withOffset: true }), [round * 10, round * 10 + 1]);
            }
        });

        test('no recovery after a clean client disconnect: a new socket, no replay', T, async () => {
            const s = await recClients.connect(mode);
            const sender = await recClients.connect('websocket');
            const room = `r${++roomSeq}`;
            await join(s, room);
            const firstId = s.id;
            sender.emit('msg', room, 'before');
            await barrier(sender);
            await barrier(s);
            assert.deepEqual(takeMsgData(s, { withOffset: true }), ['before']);

            s.disconnect();
            sender.emit('msg', room, 'while away');
            await barrier(sender);
            await Clients.connectSocket(s);
            assert.ok(!s.recovered, 'a clean disconnect must not be recovered');
            assert.notEqual(s.id, firstId);
            await barrier(s);
            assert.deepEqual(s.inbox.take('msg'), []);
        });
    });
}
