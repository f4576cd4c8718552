// Socket.IO end-to-end: a broadcast that collects acknowledgements (the C API's
// sio_broadcast_with_ack; the reference's socket.to(room).timeout(ms).emit(..., cb)).
// examples/echo_server: poll(room, q) asks every other member of the room
// question(q) and answers the sender poll-results(responses, timedOut) after all
// answered or 1 s passed.
//
//   SOCKEYE_REF=1 SOCKEYE_SIO_ECHO="node tests/e2e/ref/echo_server.mjs" node --test tests/e2e/api-broadcast-ack.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MODE_NAMES, once, useEchoServer } from './lib/sio.mjs';

const T = { timeout: 15000 };

const env = useEchoServer();

async function members(room, n) {
    const list = [];
    for (let i = 0; i < n; i++) {
        const s = await env.clients.connect(MODE_NAMES[i % MODE_NAMES.length]);
        assert.equal(await s.timeout(5000).emitWithAck('join', room), room);
        list.push(s);
    }
    return list;
}

test('every member answers: all responses, not timed out, the sender not asked', T, async () => {
    const room = 'poll-all';
    const [sender, ...others] = await members(room, 4);
    let senderAsked = false;
    sender.on('question', () => (senderAsked = true));
    others.forEach((s, i) => s.on('question', (q, ack) => ack({ who: i, q })));
    const results = once(sender, 'poll-results', 5000);
    sender.emit('poll', room, 'tea?');
    const [responses, timedOut] = await results;
    assert.equal(timedOut, false);
    assert.deepEqual(
        responses.map((r) => r.who).sort(),
        [0, 1, 2],
    );
    assert.ok(responses.every((r) => r.q === 'tea?'));
    assert.equal(senderAsked, false);
});

test('a member that does not answer: the others responses after the timeout', T, async () => {
    const room = 'poll-some';
    const [sender, a, b, silent] = await members(room, 4);
    a.on('question', (_q, ack) => ack('a'));
    b.on('question', (_q, ack) => ack('b'));
    let asked = false;
    silent.on('question', () => (asked = true)); // never acks
    const results = once(sender, 'poll-results', 5000);
    const start = Date.now();
    sender.emit('poll', room, 'coffee?');
    const [responses, timedOut] = await results;
    assert.equal(timedOut, true);
    assert.ok(Date.now() - start >= 900, 'waited for the timeout');
    assert.deepEqual([...responses].sort(), ['a', 'b']);
    assert.ok(asked, 'the silent member was asked');
});

test('nobody else in the room: empty responses at once', T, async () => {
    const [sender] = await members('poll-alone', 1);
    const results = once(sender, 'poll-results', 5000);
    sender.emit('poll', 'poll-alone', 'anyone?');
    const [responses, timedOut] = await results;
    assert.deepEqual(responses, []);
    assert.equal(timedOut, false);
});
