// Helpers for the Socket.IO end-to-end tests (tests/e2e/sio*.test.mjs): clients of the real
// npm socket.io-client on a chosen transport, an inbox that records every event a client
// receives (so no event is lost between "connected" and "listener attached"), a way to make
// a client's transport drop (TCP reset, not a clean close), and raw Engine.IO clients for the
// protocol checks. Servers are started with lib/server.mjs (startSioEcho).
import http from 'node:http';
import { after, afterEach, before } from 'node:test';
import { startSioEcho } from './server.mjs';
import { io, Manager } from 'socket.io-client';
import { Socket as EngineSocket } from 'engine.io-client';

/**
 * The three ways a client reaches the server; every scenario runs over each.
 *  polling   – HTTP long-polling only
 *  websocket – WebSocket only (no polling handshake)
 *  upgrade   – the default: polling handshake, then upgrade to WebSocket
 */
export const MODES = {
    polling: { transports: ['polling'], upgrade: false },
    websocket: { transports: ['websocket'] },
    upgrade: { transports: ['polling', 'websocket'], upgrade: true },
};
export const MODE_NAMES = Object.keys(MODES);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Reject after `ms` with a message naming what was awaited. */
export function within(promise, ms, what) {
    let timer;
    return Promise.race([
        promise,
        new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
        }),
    ]).finally(() => clearTimeout(timer));
}

/** Resolve with the arguments of the next `event` on `emitter` (rejects after `ms`). */
export function once(emitter, event, ms = 5000) {
    let handler;
    const p = new Promise((resolve) => {
        handler = (...args) => resolve(args);
        emitter.once(event, handler);
    });
    return within(p, ms, `"${event}"`).finally(() => emitter.off(event, handler));
}

/**
 * Records every event a socket receives, in order, from the moment it is created.
 * next(event) takes the oldest unconsumed occurrence of `event` (waiting for it if
 * needed) and returns its argument array (an ack callback, if any, is the last element).
 */
export class Inbox {
    constructor(socket) {
        this.items = [];
        this.waiters = [];
        socket.onAny((event, ...args) => this.push(event, args));
    }

    push(event, args) {
        const i = this.waiters.findIndex((w) => w.event === event);
        if (i >= 0) {
            const [w] = this.waiters.splice(i, 1);
            w.resolve(args);
        } else {
            this.items.push({ event, args });
        }
    }

    next(event, ms = 5000) {
        const i = this.items.findIndex((it) => it.event === event);
        if (i >= 0) return Promise.resolve(this.items.splice(i, 1)[0].args);
        let waiter;
        const p = new Promise((resolve) => {
            waiter = { event, resolve };
            this.waiters.push(waiter);
        });
        return within(p, ms, `event "${event}"`).catch((err) => {
            const j = this.waiters.indexOf(waiter);
            if (j >= 0) this.waiters.splice(j, 1);
            throw err;
        });
    }

    /** Unconsumed occurrences of `event` (all events when omitted), removed from the inbox. */
    take(event) {
        const out = [];
        this.items = this.items.filter((it) => {
            if (event !== undefined && it.event !== event) return true;
            out.push(it);
            return false;
        });
        return out;
    }

    /** Unconsumed events as [event, ...args] arrays, left in the inbox. */
    pending() {
        return this.items.map((it) => [it.event, ...it.args]);
    }
}

/**
 * An http.Agent that remembers its TCP sockets so a test can make the transport drop
 * (the server sees the TCP connection reset, the client a transport error), and can
 * refuse new connections for a while (an outage). Both polling requests and the
 * WebSocket use it (engine.io-client passes `agent` to both).
 */
export class DropAgent extends http.Agent {
    constructor() {
        super({ keepAlive: false });
        this.sockets_ = new Set();
        this.refusing = false;
    }

    createConnection(options, callback) {
        const sock = super.createConnection(options, callback);
        if (this.refusing) {
            process.nextTick(() => sock.destroy(new Error('outage (DropAgent)')));
            return sock;
        }
        this.sockets_.add(sock);
        sock.once('close', () => this.sockets_.delete(sock));
        return sock;
    }

    /** Reset every open TCP connection (RST, no close frame, no Engine.IO close). */
    dropAll() {
        for (const s of this.sockets_) {
            try {
                s.resetAndDestroy();
            } catch {
                s.destroy(); // not connected yet: nothing to reset
            }
        }
        this.sockets_.clear();
    }

    /** Start an outage: drop the connections and refuse new ones until restore(). */
    outage() {
        this.refusing = true;
        this.dropAll();
    }

    restore() {
        this.refusing = false;
    }
}

/**
 * Drop a connected client's transport and wait for its "disconnect". Retries the drop
 * while no request happens to be in flight (polling, between two GETs).
 * With `outage`, new connections are refused until agent.restore().
 */
export async function dropTransport(socket, agent, { outage = false, ms = 5000 } = {}) {
    const disconnected = once(socket, 'disconnect', ms);
    const deadline = Date.now() + ms;
    let done = false;
    disconnected.then(
        () => (done = true),
        () => (done = true),
    );
    while (!done && Date.now() < deadline) {
        if (outage) agent.outage();
        else agent.dropAll();
        await sleep(25);
    }
    const [reason] = await disconnected;
    return reason;
}

/**
 * Creates socket.io-client sockets against one server and closes them all at the end.
 * Every socket gets an Inbox (`socket.inbox`) attached before it connects.
 */
export class Clients {
    constructor(url) {
        this.url = url;
        this.sockets = new Set();
        this.managers = new Set();
    }

    /** Socket options for `mode` (see MODES) merged with `opts`; not connected yet. */
    options(mode, opts = {}) {
        if (!MODES[mode]) throw new Error(`unknown mode ${mode}`);
        return {
            path: '/socket.io/',
            forceNew: true,
            reconnection: false,
            timeout: 5000,
            autoConnect: false,
            ...MODES[mode],
            ...opts,
        };
    }

    /** A new socket (not connected) for namespace `nsp` over `mode`. */
    create(mode, opts = {}, nsp = '/') {
        const socket = io(this.url + nsp, this.options(mode, opts));
        socket.inbox = new Inbox(socket);
        socket.mode = mode;
        this.sockets.add(socket);
        return socket;
    }

    /** A Manager (one Engine.IO connection) for `mode`, to open several namespaces on it. */
    manager(mode, opts = {}) {
        const { forceNew, autoConnect, ...rest } = this.options(mode, opts);
        const m = new Manager(this.url, { ...rest, autoConnect: false });
        this.managers.add(m);
        return m;
    }

    /** Socket of `manager` for `nsp`, with an Inbox; not connected yet. */
    socketOf(manager, nsp) {
        const socket = manager.socket(nsp);
        socket.inbox = new Inbox(socket);
        this.sockets.add(socket);
        return socket;
    }

    /** Connect `socket` and resolve once it is connected (reject on connect_error). */
    static connectSocket(socket, ms = 5000) {
        const p = new Promise((resolve, reject) => {
            const onConnect = () => {
                socket.off('connect_error', onError);
                resolve(socket);
            };
            const onError = (err) => {
                socket.off('connect', onConnect);
                reject(new Error(`connect_error: ${err.message}`));
            };
            socket.once('connect', onConnect);
            socket.once('connect_error', onError);
        });
        socket.connect();
        return within(p, ms, `connection over ${socket.mode ?? 'manager'}`);
    }

    /** A connected socket for `mode`. */
    connect(mode, opts = {}, nsp = '/') {
        return Clients.connectSocket(this.create(mode, opts, nsp));
    }

    closeAll() {
        for (const s of this.sockets) s.disconnect();
        for (const m of this.managers) m.engine?.close();
        this.sockets.clear();
        this.managers.clear();
    }
}

/** Which transport the socket's Engine.IO connection currently uses. */
export function transportName(socket) {
    return socket.io.engine?.transport?.name;
}

/** Wait until a default-mode client has upgraded to WebSocket. */
export async function waitUpgraded(socket, ms = 5000) {
    if (transportName(socket) === 'websocket') return;
    await once(socket.io.engine, 'upgrade', ms);
}

/** An echo round trip: once it returns, the server has processed everything sent before. */
export async function barrier(socket, ms = 5000) {
    const token = `barrier-${Math.random().toString(36).slice(2)}`;
    const reply = await socket.timeout(ms).emitWithAck('echo', token);
    if (reply !== token) throw new Error(`barrier echo returned ${JSON.stringify(reply)}`);
}

/** Normalize anything binary (Buffer, ArrayBuffer, typed array) to a Buffer, recursively. */
export function normalizeBinary(value) {
    if (Buffer.isBuffer(value)) return value;
    if (value instanceof ArrayBuffer) return Buffer.from(value);
    if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    if (Array.isArray(value)) return value.map(normalizeBinary);
    if (value && typeof value === 'object') {
        const out = {};
        for (const [k, v] of Object.entries(value)) out[k] = normalizeBinary(v);
        return out;
    }
    return value;
}

/**
 * A raw Engine.IO client (engine.io-client) on the Socket.IO path: the test speaks
 * Socket.IO packets as text itself. `messages` records every message received.
 * Resolves once the Engine.IO handshake is done.
 */
export function rawEngine(url, mode, opts = {}) {
    const sock = new EngineSocket(url, {
        path: '/socket.io/',
        ...MODES[mode],
        ...opts,
    });
    sock.messages = [];
    sock.handshake = null; // the Engine.IO open packet's data
    sock.on('handshake', (data) => (sock.handshake = data));
    sock.closedAt = null;
    sock.closeReason = null;
    sock.closed = new Promise((resolve) => {
        sock.on('close', (reason, desc) => {
            sock.closedAt = Date.now();
            sock.closeReason = reason;
            resolve(reason);
        });
    });
    const msgWaiters = [];
    sock.on('message', (data) => {
        sock.messages.push(data);
        const w = msgWaiters.shift();
        if (w) w(data);
    });
    /** The next message received (in order; already received ones first). */
    let read = 0;
    sock.nextMessage = (ms = 5000) => {
        if (read < sock.messages.length) return Promise.resolve(sock.messages[read++]);
        return within(
            new Promise((resolve) => msgWaiters.push((d) => (read++, resolve(d)))),
            ms,
            `a raw Engine.IO message (received so far: ${JSON.stringify(sock.messages).slice(-300)}` +
                `${sock.closedAt ? `; closed: ${sock.closeReason}` : ''})`,
        );
    };
    const opened = new Promise((resolve, reject) => {
        sock.once('open', () => {
            sock.openedAt = Date.now();
            resolve(sock);
        });
        sock.once('error', (err) => reject(new Error(`engine error: ${err?.message ?? err}`)));
    });
    return within(opened, 5000, `raw Engine.IO open over ${mode}`);
}

/**
 * Registers before/afterEach/after hooks that start one echo server for the test file
 * (`startSioEcho(args)`), close every client after each test (and check the server is
 * alive), and stop the server at the end. Returns { server, clients }, filled in before().
 */
export function useEchoServer(args = []) {
    const env = { server: null, clients: null };
    before(async () => {
        env.server = await startSioEcho(args);
        env.clients = new Clients(`http://127.0.0.1:${env.server.port}`);
    });
    afterEach(() => {
        env.clients.closeAll();
        env.server.assertAlive();
    });
    after(async () => {
        env.clients?.closeAll();
        await env.server?.stop();
    });
    return env;
}
