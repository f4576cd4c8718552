#!/usr/bin/env node
// Reference backend for the chat example, built on the npm `socket.io`
// package: it serves examples/chat/public and the socket.io-client bundle and
// speaks the same event protocol as `sockeye -c examples/chat/sockeye.conf`,
// so that tests/browser/chat.test.mjs can be proven before (and compared
// with) the C daemon:
//
//   SOCKEYE_CHAT="node tests/browser/ref_chat.mjs" node --test tests/browser/chat.test.mjs
//
// Flags: --port N (default 3000). Listens on 127.0.0.1.
//
// Namespace '/' (numUsers = the sockets that did "add user"):
//   add user(name)    once per socket, and only with a name: the sender gets
//                     login {numUsers}, every other socket user joined
//                     {username, numUsers}
//   new message(text) every other socket: new message {username, message}
//   typing            every other socket: typing {username}
//   stop typing       every other socket: stop typing {username}
//   disconnect        if the socket was added: every other socket user left
//                     {username, numUsers}
// A username that was never set is sent as null (what sockeye's templates
// produce for a missing value).

import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(HERE, '..', '..');
const PUBLIC_DIR = path.join(REPO_ROOT, 'examples', 'chat', 'public');
const BUNDLE_DIR = path.join(REPO_ROOT, 'tests', 'e2e', 'node_modules', 'socket.io-client', 'dist');
const ENGINE_PATH = '/socket.io/';
const BUNDLE_FILES = new Set([
    'socket.io.js',
    'socket.io.min.js',
    'socket.io.esm.min.js',
    'socket.io.js.map',
    'socket.io.min.js.map',
    'socket.io.esm.min.js.map',
]);

// The npm packages of the end-to-end tests (one package.json for all JS tests).
const require = createRequire(path.join(REPO_ROOT, 'tests', 'e2e', 'package.json'));
const { Server } = require('socket.io');

const TYPES = {
    '.html': 'text/html; charset=utf-8',
    '.css': 'text/css; charset=utf-8',
    '.js': 'text/javascript; charset=utf-8',
    '.map': 'application/json; charset=utf-8',
    '.json': 'application/json; charset=utf-8',
    '.png': 'image/png',
    '.svg': 'image/svg+xml',
    '.ico': 'image/x-icon',
};

function parseArgs(argv) {
    let port = 3000;
    for (let i = 0; i < argv.length; i++) {
        if (argv[i] === '--port' && /^\d+$/.test(argv[i + 1] ?? '')) {
            port = Number(argv[++i]);
        } else {
            process.stderr.write(`ref_chat: bad argument: ${argv[i]}\nusage: ref_chat.mjs [--port N]\n`);
            process.exit(2);
        }
    }
    return { port };
}

function sendError(res, status) {
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(`${status}\n`);
}

// Serves one regular file below root, or answers 404 (nothing outside root:
// the decoded path is normalized and must stay inside).
function serveFile(req, res, root, relPath) {
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendError(res, 405);
    const file = path.resolve(root, '.' + path.posix.normalize('/' + relPath));
    if (file !== root && !file.startsWith(root + path.sep)) return sendError(res, 404);
    let st;
    try {
        st = statSync(file);
    } catch {
        return sendError(res, 404);
    }
    if (!st.isFile()) return sendError(res, 404);
    const etag = `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
    const headers = {
        'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
        etag,
        'cache-control': 'no-cache',
    };
    if (req.headers['if-none-match'] === etag) {
        res.writeHead(304, headers);
        return res.end();
    }
    res.writeHead(200, { ...headers, 'content-length': st.size });
    if (req.method === 'HEAD') return res.end();
    createReadStream(file).pipe(res);
}

function handleHttp(req, res, engineListeners, server) {
    let pathname;
    try {
        pathname = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
    } catch {
        return sendError(res, 400);
    }
    if (pathname.startsWith(ENGINE_PATH)) {
        const name = pathname.slice(ENGINE_PATH.length);
        if (BUNDLE_FILES.has(name)) return serveFile(req, res, BUNDLE_DIR, name);
        for (const l of engineListeners) l.call(server, req, res);
        return;
    }
    if (pathname.includes('\0')) return sendError(res, 400);
    serveFile(req, res, PUBLIC_DIR, pathname.endsWith('/') ? pathname + 'index.html' : pathname);
}

const { port } = parseArgs(process.argv.slice(2));
const server = createServer();
// Our own handler serves the bundle (from the same dist folder sockeye
// uses), so socket.io's built-in copy is off.
const io = new Server(server, { path: ENGINE_PATH, serveClient: false });
const engineListeners = server.listeners('request').slice();
server.removeAllListeners('request');
server.on('request', (req, res) => handleHttp(req, res, engineListeners, server));

let numUsers = 0;

io.on('connection', (socket) => {
    let added = false;
    const username = () => socket.data.username ?? null;

    socket.on('add user', (...args) => {
        if (added || args.length < 1) return;
        added = true;
        socket.data.username = args[0];
        numUsers++;
        socket.emit('login', { numUsers });
        socket.broadcast.emit('user joined', { username: username(), numUsers });
    });
    socket.on('new message', (...args) => {
        socket.broadcast.emit('new message', { username: username(), message: args[0] ?? null });
    });
    socket.on('typing', () => socket.broadcast.emit('typing', { username: username() }));
    socket.on('stop typing', () => socket.broadcast.emit('stop typing', { username: username() }));
    socket.on('disconnect', () => {
        if (!added) return;
        numUsers--;
        socket.broadcast.emit('user left', { username: username(), numUsers });
    });
});

server.listen(port, '127.0.0.1', () => {
    process.stderr.write(`ref_chat: listening on http://127.0.0.1:${port}/\n`);
});

function shutdown() {
    io.close();
    server.closeAllConnections?.();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
