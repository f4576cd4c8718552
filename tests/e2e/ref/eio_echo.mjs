#!/usr/bin/env node
// Reference for examples/eio_echo: the npm `engine.io` server with the same command-line
// interface as the C example, so the end-to-end tests can be validated against it
// (SOCKEYE_EIO_ECHO="node tests/e2e/ref/eio_echo.mjs").
//
// An Engine.IO-only server on 127.0.0.1, path /engine.io/, CORS `*`, that sends every
// message back unchanged (text as text, binary as binary).
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import process from 'node:process';
import { Server } from 'engine.io';

const USAGE = `usage: eio_echo.mjs --port N [--ping-interval MS] [--ping-timeout MS]
       [--max-payload BYTES] [--upgrade-timeout MS] [--tls-cert FILE --tls-key FILE]
       [--header-timeout MS] [--max-output BYTES] [--per-message-deflate 0|1]
       [--cookie NAME] [--deny-origin ORIGIN] [--cors ORIGINS] [--cors-credentials 0|1]`;

function fail(msg) {
    process.stderr.write(`eio_echo.mjs: ${msg}\n${USAGE}\n`);
    process.exit(2);
}

function parseArgs(argv) {
    const numeric = {
        '--port': 'port',
        '--ping-interval': 'pingInterval',
        '--ping-timeout': 'pingTimeout',
        '--max-payload': 'maxPayload',
        '--upgrade-timeout': 'upgradeTimeout',
        '--header-timeout': 'headerTimeout',
        '--max-output': 'maxOutput', // sockeye only: accepted and ignored here
        '--per-message-deflate': 'perMessageDeflate',
        '--cors-credentials': 'corsCredentials',
    };
    const files = {
        '--tls-cert': 'tlsCert',
        '--tls-key': 'tlsKey',
        '--cookie': 'cookie',
        '--deny-origin': 'denyOrigin',
        '--cors': 'cors',
    };
    const opts = {};
    for (let i = 0; i < argv.length; i++) {
        const flag = argv[i];
        const key = numeric[flag] ?? files[flag];
        if (key === undefined) fail(`unknown argument: ${flag}`);
        const value = argv[++i];
        if (value === undefined) fail(`${flag} needs a value`);
        if (numeric[flag]) {
            if (!/^\d+$/.test(value)) fail(`${flag}: not a non-negative integer: ${value}`);
            opts[key] = Number(value);
        } else {
            opts[key] = value;
        }
    }
    if (opts.port === undefined) fail('--port is required');
    if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined))
        fail('--tls-cert and --tls-key go together');
    return opts;
}

const opts = parseArgs(process.argv.slice(2));

const httpOptions = {};
if (opts.headerTimeout !== undefined) {
    // Node checks these timeouts every connectionsCheckingInterval ms (30 s by default).
    httpOptions.headersTimeout = opts.headerTimeout;
    httpOptions.requestTimeout = opts.headerTimeout;
    httpOptions.connectionsCheckingInterval = Math.max(10, Math.min(100, opts.headerTimeout / 10));
}
const httpServer = opts.tlsCert
    ? https.createServer({
          ...httpOptions,
          cert: readFileSync(opts.tlsCert),
          key: readFileSync(opts.tlsKey),
      })
    : http.createServer(httpOptions);

const engineOptions = { path: '/engine.io/', cors: { origin: '*' } };
if (opts.cors !== undefined)
    engineOptions.cors = {
        origin: opts.cors === '*' ? '*' : opts.cors.split(',').map((o) => o.trim()),
        credentials: Boolean(opts.corsCredentials),
    };
if (opts.pingInterval !== undefined) engineOptions.pingInterval = opts.pingInterval;
if (opts.pingTimeout !== undefined) engineOptions.pingTimeout = opts.pingTimeout;
if (opts.maxPayload !== undefined) engineOptions.maxHttpBufferSize = opts.maxPayload;
if (opts.upgradeTimeout !== undefined) engineOptions.upgradeTimeout = opts.upgradeTimeout;
if (opts.perMessageDeflate) engineOptions.perMessageDeflate = { threshold: 1024 };
if (opts.cookie !== undefined) engineOptions.cookie = { name: opts.cookie, path: '/', httpOnly: true, sameSite: 'lax' };
if (opts.denyOrigin !== undefined)
    engineOptions.allowRequest = (req, cb) => cb(null, req.headers.origin !== opts.denyOrigin);

const engine = new Server(engineOptions);
engine.attach(httpServer, { path: engineOptions.path });
engine.on('connection', (socket) => {
    socket.on('message', (data) => socket.send(data));
});

httpServer.on('error', (err) => {
    process.stderr.write(`eio_echo.mjs: ${err.message}\n`);
    process.exit(1);
});
httpServer.listen(opts.port, '127.0.0.1');

function shutdown() {
    engine.close();
    httpServer.close();
    process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
