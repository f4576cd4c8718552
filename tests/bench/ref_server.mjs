#!/usr/bin/env node
// Reference server for the benchmark: the npm `socket.io` package (4.8.4, the
// copy installed for the end-to-end tests in tests/e2e/node_modules), with the
// same three handlers that examples/echo_server has for the benchmark:
//
//   join(room, ack)   join the room, then ack()
//   msg(room, data)   emit msg(data) to the room, except the sender
//   echo(d, ack)      ack(d)
//
//   node tests/bench/ref_server.mjs --port N
//
// SOCKEYE_BENCH_NODE_MODULES may point at another node_modules holding socket.io.
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.SOCKEYE_BENCH_NODE_MODULES || path.join(here, '..', 'e2e', 'node_modules');
const require = createRequire(path.join(modules, '..', 'noop.js'));
const { Server } = require('socket.io');

function parsePort(argv) {
    if (argv.length !== 2 || argv[0] !== '--port' || !/^\d+$/.test(argv[1]) || Number(argv[1]) > 65535) {
        process.stderr.write('usage: ref_server.mjs --port N\n');
        process.exit(2);
    }
    return Number(argv[1]);
}

const port = parsePort(process.argv.slice(2));
const httpServer = createServer();
const io = new Server(httpServer, { path: '/socket.io/' });

io.on('connection', (socket) => {
    socket.on('join', (room, ack) => {
        socket.join(room);
        if (typeof ack === 'function') ack();
    });
    socket.on('msg', (room, data) => {
        socket.to(room).emit('msg', data);
    });
    socket.on('echo', (d, ack) => {
        if (typeof ack === 'function') ack(d);
    });
});

httpServer.on('error', (err) => {
    process.stderr.write(`ref_server: ${err.message}\n`);
    process.exit(1);
});
httpServer.listen(port, '127.0.0.1');

function shutdown() {
    io.close();
    httpServer.closeAllConnections?.();
    process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
