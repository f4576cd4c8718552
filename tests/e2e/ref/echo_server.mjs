#!/usr/bin/env node
// Reference Socket.IO echo server for the end-to-end tests, built on the npm
// `socket.io` package. It has the same command line and the same behaviour as
// examples/echo_server (the C example), so that the tests can be proven
// against the reference first:
//
//   SOCKEYE_SIO_ECHO="node tests/e2e/ref/echo_server.mjs" node --test tests/e2e/sio.test.mjs
//
// Flags: --port N (required), --ping-interval MS, --ping-timeout MS,
// --connect-timeout MS, --max-payload BYTES, --recovery MS (connection state
// recovery with that maxDisconnectionDuration; off when absent).
//
// Namespace '/':
//   on connect                emit auth(<handshake auth object>)
//   message(...a)             emit message-back(...a) to the sender
//   message-with-ack(...a,cb) ack(...a)
//   join(room, cb)            join room, ack(room)
//   leave(room, cb)           leave room, ack(room)
//   msg(room, data)           emit msg(data) to the room, except the sender
//   echo(d, cb)               ack(d)
//   ask(event, ...a)          emit event(...a) to the sender with an ack and a
//                             2000 ms timeout; then emit asked(...ackArgs) to the
//                             sender, or asked-timeout() when no ack came in time
// Namespace '/custom': on connect emit auth(<handshake auth object>).
// Any other namespace is unknown ('Invalid namespace').

import { createServer } from 'node:http';
import { Server } from 'socket.io';

const ASK_TIMEOUT_MS = 2000;

function parseArgs(argv) {
    const opts = {};
    const numeric = {
        '--port': 'port',
        '--ping-interval': 'pingInterval',
        '--ping-timeout': 'pingTimeout',
        '--connect-timeout': 'connectTimeout',
        '--max-payload': 'maxPayload',
        '--recovery': 'recovery',
    };
    for (let i = 0; i < argv.length; i++) {
        const key = numeric[argv[i]];
        const value = argv[i + 1];
        if (!key || value === undefined || !/^\d+$/.test(value)) {
            process.stderr.write(`echo_server: bad argument: ${argv[i]}\n`);
            process.exit(2);
        }
        opts[key] = Number(value);
        i++;
    }
    if (opts.port === undefined) {
        process.stderr.write('echo_server: --port is required\n');
        process.exit(2);
    }
    return opts;
}

const opts = parseArgs(process.argv.slice(2));

const serverOpts = {
    path: '/socket.io/',
    cors: { origin: '*' },
};
if (opts.pingInterval !== undefined) serverOpts.pingInterval = opts.pingInterval;
if (opts.pingTimeout !== undefined) serverOpts.pingTimeout = opts.pingTimeout;
if (opts.connectTimeout !== undefined) serverOpts.connectTimeout = opts.connectTimeout;
if (opts.maxPayload !== undefined) serverOpts.maxHttpBufferSize = opts.maxPayload;
if (opts.recovery !== undefined) {
    serverOpts.connectionStateRecovery = {
        maxDisconnectionDuration: opts.recovery,
        skipMiddlewares: true,
    };
}

const httpServer = createServer();
const io = new Server(httpServer, serverOpts);

// Only call an ack when the client asked for one.
function lastFn(args) {
    return typeof args[args.length - 1] === 'function' ? args.pop() : null;
}

io.of('/').on('connection', (socket) => {
    socket.emit('auth', socket.handshake.auth);

    socket.on('message', (...args) => {
        lastFn(args);
        socket.emit('message-back', ...args);
    });
    socket.on('message-with-ack', (...args) => {
        const ack = lastFn(args);
        if (ack) ack(...args);
    });
    socket.on('join', (...args) => {
        const ack = lastFn(args);
        socket.join(args[0]);
        if (ack) ack(args[0]);
    });
    socket.on('leave', (...args) => {
        const ack = lastFn(args);
        socket.leave(args[0]);
        if (ack) ack(args[0]);
    });
    socket.on('msg', (...args) => {
        lastFn(args);
        socket.to(args[0]).emit('msg', args[1]);
    });
    socket.on('echo', (...args) => {
        const ack = lastFn(args);
        if (ack) ack(args[0]);
    });
    socket.on('ask', (...args) => {
        lastFn(args);
        const [event, ...rest] = args;
        if (typeof event !== 'string') return;
        try {
            socket.timeout(ASK_TIMEOUT_MS).emit(event, ...rest, (err, ...reply) => {
                if (err) socket.emit('asked-timeout');
                else socket.emit('asked', ...reply);
            });
        } catch {
            // A reserved event name ('connect', 'disconnect', ...): ignored.
        }
    });
});

// poll(room, question): asks every other member of the room, collects their acks
// for up to 1 s, then tells the sender: poll-results(responses, timedOut).
io.of('/').on('connection', (socket) => {
    socket.on('poll', (room, question) => {
        if (typeof room !== 'string') return;
        socket
            .to(room)
            .timeout(1000)
            .emit('question', question, (err, responses) => socket.emit('poll-results', responses, Boolean(err)));
    });
});

io.of('/custom').on('connection', (socket) => {
    socket.emit('auth', socket.handshake.auth);
});

httpServer.listen(opts.port, '127.0.0.1');

function shutdown() {
    io.close();
    httpServer.closeAllConnections?.();
    process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
