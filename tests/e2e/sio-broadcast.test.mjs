// Socket.IO end-to-end: broadcast to rooms across mixed transports. Members of a room on
// polling, WebSocket and the upgrade path receive every message in order (binary included);
// the sender and non-members receive nothing, proven by an echo round trip on every client
// after the sender's last message has been processed.
//
//   SOCKEYE_REF=1 SOCKEYE_SIO_ECHO="node tests/e2e/ref/echo_server.mjs" node --test tests/e2e/sio-broadcast.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { barrier, MODE_NAMES, normalizeBinary, useEchoServer } from './lib/sio.mjs';

const T = { timeout: 20000 };
const N = 60;

const env = useEchoServer();
let roomSeq = 0;

/** The i-th message of a run: JSON, and every 10th one with binary attachments. */
function payload(tag, i) {
    const p = { seq: i, tag, text: `m${i} ü🎉`, list: [i, null, {}] };
    if (i % 10 === 3) {
        p.bin = Buffer.from([i & 0xff, 0, 255, 0x1e]);
        p.more = [Buffer.alloc(i * 10, i & 0xff)];
    }
    return p;
}

async function join(socket, room) {
    assert.equal(await socket.timeout(5000).emitWithAck('join', room), room);
}

async function leave(socket, room) {
    assert.equal(await socket.timeout(5000).emitWithAck('leave', room), room);
}

/** Connected sockets, one per mode, in `MODE_NAMES` order. */
function onePerMode() {
    return Promise.all(MODE_NAMES.map((m) => env.clients.connect(m)));
}

for (const senderMode of MODE_NAMES) {
    test(`room broadcast from a ${senderMode} sender to members on every transport`, T, async () => {
        const room = `room-${++roomSeq}`;
        const sender = await env.clients.connect(senderMode);
        const members = await onePerMode();
        const outsiders = await onePerMode(); // never join
        const leavers = await onePerMode(); // join, then leave
        const elsewhere = await env.clients.connect('websocket'); // in another room

        for (const s of [sender, ...members, ...leavers]) await join(s, room);
        for (const s of leavers) await leave(s, room);
        await join(elsewhere, `${room}-other`);

        const expected = [];
        for (let i = 0; i < N; i++) {
            const p = payload(room, i);
            expected.push([p]);
            sender.emit('msg', room, p);
        }
        await barrier(sender);
        const everyone = [sender, ...members, ...outsiders, ...leavers, elsewhere];
        await Promise.all(everyone.map((s) => barrier(s)));

        for (const m of members) {
            const got = m.inbox.take('msg').map((it) => normalizeBinary(it.args));
            assert.equal(got.length, N, `member over ${m.mode} received ${got.length} of ${N}`);
            assert.deepEqual(got, expected, `member over ${m.mode}: wrong content or order`);
        }
        assert.deepEqual(sender.inbox.take('msg'), [], 'the sender must not receive its own broadcast');
        for (const s of [...outsiders, ...leavers, elsewhere]) {
            assert.deepEqual(s.inbox.take('msg'), [], `non-member over ${s.mode} received a broadcast`);
        }
    });
}

test('two senders into one room: each sender’s messages stay in order, nobody gets its own', T, async () => {
    const room = `room-${++roomSeq}`;
    const [a, b, c] = await onePerMode();
    for (const s of [a, b, c]) await join(s, room);
    for (let i = 0; i < N; i++) {
        a.emit('msg', room, { from: 'a', i });
        b.emit('msg', room, { from: 'b', i });
    }
    await Promise.all([barrier(a), barrier(b)]);
    await Promise.all([a, b, c].map((s) => barrier(s)));
    const seqOf = (s, from) =>
        s.inbox
            .pending()
            .filter(([ev, d]) => ev === 'msg' && d.from === from)
            .map(([, d]) => d.i);
    const range = [...Array(N).keys()];
    assert.deepEqual(seqOf(c, 'a'), range);
    assert.deepEqual(seqOf(c, 'b'), range);
    assert.deepEqual(seqOf(b, 'a'), range);
    assert.deepEqual(seqOf(a, 'b'), range);
    assert.deepEqual(seqOf(a, 'a'), []);
    assert.deepEqual(seqOf(b, 'b'), []);
});

test('a socket in two rooms gets both; a room named by a socket id reaches only that socket', T, async () => {
    const [p, w, u] = await onePerMode();
    const r1 = `room-${++roomSeq}`;
    const r2 = `room-${++roomSeq}`;
    await join(p, r1);
    await join(p, r2);
    await join(w, r2);
    u.emit('msg', r1, 'to r1');
    u.emit('msg', r2, 'to r2');
    u.emit('msg', `${r1}-empty`, 'to nobody');
    // Every socket is in the room named by its own id.
    u.emit('msg', w.id, 'private to w');
    await barrier(u);
    await Promise.all([p, w, u].map((s) => barrier(s)));
    assert.deepEqual(p.inbox.take('msg').map((it) => it.args), [['to r1'], ['to r2']]);
    assert.deepEqual(w.inbox.take('msg').map((it) => it.args), [['to r2'], ['private to w']]);
    assert.deepEqual(u.inbox.take('msg'), []);
});

test('a room member that disconnects stops receiving; the others are unaffected', T, async () => {
    const room = `room-${++roomSeq}`;
    const [p, w, u] = await onePerMode();
    const gone = await env.clients.connect('websocket');
    for (const s of [p, w, gone]) await join(s, room);
    gone.disconnect();
    for (let i = 0; i < 10; i++) u.emit('msg', room, i);
    await barrier(u);
    await Promise.all([p, w].map((s) => barrier(s)));
    const range = [...Array(10).keys()].map((i) => [i]);
    assert.deepEqual(p.inbox.take('msg').map((it) => it.args), range);
    assert.deepEqual(w.inbox.take('msg').map((it) => it.args), range);
    assert.deepEqual(gone.inbox.take('msg'), []);
});
