// Raw HTTP/1.1 and WebSocket (RFC 6455) over node:net / node:tls, for tests that must see
// or send exactly the bytes a client library would hide or refuse to produce.
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';

export const EIO_PATH = '/engine.io/';
export const RS = '\x1e'; // Engine.IO polling payload separator

const CRLF2 = Buffer.from('\r\n\r\n');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Reject after `ms` with `what` in the message; `promise` wins if it settles first. */
export function withTimeout(promise, ms, what) {
    let timer;
    return Promise.race([
        promise.finally(() => clearTimeout(timer)),
        new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
        }),
    ]);
}

/**
 * A TCP (or TLS) connection that buffers what it receives so tests can parse it at their
 * own pace. `tls` may be true or an object of node:tls options.
 */
export class RawConn {
    constructor(sock) {
        this.sock = sock;
        this.buf = Buffer.alloc(0);
        this.ended = false; // peer sent FIN (or the socket closed)
        this.closed = false;
        this.error = null;
        this.waiters = new Set();
        sock.on('data', (d) => {
            this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
            this.wake();
        });
        sock.on('end', () => {
            this.ended = true;
            this.wake();
        });
        sock.on('error', (err) => {
            this.error = err;
            this.wake();
        });
        this.closedPromise = new Promise((resolve) => {
            sock.on('close', () => {
                this.closed = true;
                this.ended = true;
                this.closedAt = performance.now();
                this.wake();
                resolve();
            });
        });
    }

    static connect(port, { tls: tlsOpts, host = '127.0.0.1', timeoutMs = 5000 } = {}) {
        return withTimeout(
            new Promise((resolve, reject) => {
                const sock = tlsOpts
                    ? tls.connect({ port, host, servername: 'localhost', ...(tlsOpts === true ? {} : tlsOpts) })
                    : net.connect({ port, host });
                const ev = tlsOpts ? 'secureConnect' : 'connect';
                sock.once('error', reject);
                sock.once(ev, () => {
                    sock.removeListener('error', reject);
                    sock.setNoDelay(true);
                    resolve(new RawConn(sock));
                });
            }),
            timeoutMs,
            `connect to port ${port}`,
        );
    }

    wake() {
        for (const w of [...this.waiters]) w();
    }

    /**
     * Wait until `parse(this.buf)` returns a non-undefined value (it may consume bytes by
     * assigning this.buf). Rejects on timeout; resolves `onEnd()` if the peer ends first.
     */
    waitFor(parse, timeoutMs, what, onEnd = () => null) {
        return new Promise((resolve, reject) => {
            let timer;
            const check = () => {
                try {
                    const v = parse();
                    if (v !== undefined) {
                        done();
                        resolve(v);
                    } else if (this.ended || this.closed) {
                        done();
                        resolve(onEnd());
                    }
                } catch (err) {
                    done();
                    reject(err);
                }
            };
            const done = () => {
                clearTimeout(timer);
                this.waiters.delete(check);
            };
            timer = setTimeout(() => {
                done();
                reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
            }, timeoutMs);
            this.waiters.add(check);
            check();
        });
    }

    write(data) {
        if (this.sock.destroyed || this.sock.writableEnded) return false;
        try {
            return this.sock.write(data);
        } catch {
            return false;
        }
    }

    /** Wait until the connection is fully closed; returns true if it closed in time. */
    async waitClosed(timeoutMs) {
        if (this.closed) return true;
        let timer;
        const ok = await Promise.race([
            this.closedPromise.then(() => true),
            new Promise((r) => (timer = setTimeout(() => r(false), timeoutMs))),
        ]);
        clearTimeout(timer);
        return ok;
    }

    /** Wait until the peer ends or closes the connection (FIN, RST or close). */
    async waitEnded(timeoutMs) {
        try {
            await this.waitFor(() => undefined, timeoutMs, 'connection end');
            return true;
        } catch {
            return false;
        }
    }

    destroy() {
        this.sock.destroy();
    }

    /** Read one HTTP response (status line, headers, body). Resolves null if the peer closes first. */
    readHttpResponse(timeoutMs = 5000, { method = 'GET' } = {}) {
        return this.waitFor(
            () => parseHttpResponse(this, method, false),
            timeoutMs,
            'an HTTP response',
            () => parseHttpResponse(this, method, true) ?? null,
        );
    }
}

/**
 * Try to take one complete HTTP response from conn.buf. Returns undefined when more
 * input is needed; with `atEnd` a body delimited by connection close is complete.
 */
function parseHttpResponse(conn, method, atEnd) {
    const buf = conn.buf;
    const hdrEnd = buf.indexOf(CRLF2);
    if (hdrEnd < 0) return undefined;
    const head = buf.subarray(0, hdrEnd).toString('latin1');
    const lines = head.split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]);
    if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(lines[0])}`);
    const status = Number(m[1]);
    const headers = {};
    for (const line of lines.slice(1)) {
        const i = line.indexOf(':');
        if (i <= 0) throw new Error(`bad header line: ${JSON.stringify(line)}`);
        const name = line.slice(0, i).trim().toLowerCase();
        const value = line.slice(i + 1).trim();
        headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
    }
    let rest = buf.subarray(hdrEnd + 4);
    let body;
    const noBody = method === 'HEAD' || status === 101 || status === 204 || status === 304 || (status >= 100 && status < 200);
    if (noBody) {
        body = Buffer.alloc(0);
    } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
        const parts = [];
        let off = 0;
        for (;;) {
            const eol = rest.indexOf('\r\n', off);
            if (eol < 0) return undefined;
            const size = parseInt(rest.subarray(off, eol).toString('latin1'), 16);
            if (Number.isNaN(size)) throw new Error('bad chunk size');
            if (size === 0) {
                const trailerEnd = rest.indexOf('\r\n', eol + 2);
                if (trailerEnd < 0) return undefined;
                off = trailerEnd + 2;
                break;
            }
            if (rest.length < eol + 2 + size + 2) return undefined;
            parts.push(rest.subarray(eol + 2, eol + 2 + size));
            off = eol + 2 + size + 2;
        }
        body = Buffer.concat(parts);
        rest = rest.subarray(off);
    } else if (headers['content-length'] !== undefined) {
        const len = Number(headers['content-length']);
        if (rest.length < len) return undefined;
        body = rest.subarray(0, len);
        rest = rest.subarray(len);
    } else {
        if (!atEnd) return undefined;
        body = rest;
        rest = Buffer.alloc(0);
    }
    conn.buf = Buffer.from(rest);
    return { status, reason: m[2] ?? '', headers, body, text: body.toString('utf8') };
}

/** Bytes of an HTTP/1.1 request. `body` may be a string or Buffer; Content-Length is added. */
export function buildRequest({ method = 'GET', path = '/', headers = {}, body, host = '127.0.0.1' }) {
    const lines = [`${method} ${path} HTTP/1.1`];
    const names = new Set(Object.keys(headers).map((h) => h.toLowerCase()));
    if (!names.has('host')) lines.push(`Host: ${host}`);
    const bodyBuf = body === undefined ? null : Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
    if (bodyBuf && !names.has('content-length')) lines.push(`Content-Length: ${bodyBuf.length}`);
    for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
    const head = Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
    return bodyBuf ? Buffer.concat([head, bodyBuf]) : head;
}

/**
 * One request on a fresh connection; resolves the response
 * { status, reason, headers, body, text } or null if the server closed without one.
 */
export function httpRequest(port, req = {}, { tls: tlsOpts, timeoutMs = 5000 } = {}) {
    const p = (async () => {
        const conn = await RawConn.connect(port, { tls: tlsOpts });
        try {
            conn.write(buildRequest(req));
            return await conn.readHttpResponse(timeoutMs, { method: req.method });
        } finally {
            conn.destroy();
        }
    })();
    // A request started in the background (a pending GET) may be left unawaited when a
    // test fails early; its rejection must not become an unhandled one.
    p.catch(() => {});
    return p;
}

/** The Engine.IO path with a query string built from `params` (in order). */
export function eioPath(params = {}) {
    const q = Object.entries(params)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
        .join('&');
    return q ? `${EIO_PATH}?${q}` : EIO_PATH;
}

/** Parse an Engine.IO open packet `0{...}`. */
export function parseOpen(text) {
    if (!text.startsWith('0')) throw new Error(`expected an open packet, got ${JSON.stringify(text.slice(0, 80))}`);
    return JSON.parse(text.slice(1));
}

/**
 * Polling handshake: resolves { sid, upgrades, pingInterval, pingTimeout, maxPayload,
 * openedAt (performance.now() when the open packet arrived), response }.
 */
export async function pollingHandshake(port, opts = {}) {
    const res = await httpRequest(port, { path: eioPath({ EIO: 4, transport: 'polling' }) }, opts);
    if (!res || res.status !== 200) throw new Error(`polling handshake failed: ${res ? res.status + ' ' + res.text : 'no response'}`);
    const openedAt = performance.now();
    return { ...parseOpen(res.text), openedAt, response: res };
}

/** Start a GET on the session (a new connection); resolves its response. */
export function pollGet(port, sid, { timeoutMs = 5000, tls: tlsOpts } = {}) {
    return httpRequest(port, { path: eioPath({ EIO: 4, transport: 'polling', sid }) }, { timeoutMs, tls: tlsOpts });
}

/** POST `body` (string or Buffer) to the session; resolves its response. */
export function pollPost(port, sid, body, { headers = { 'Content-Type': 'text/plain;charset=UTF-8' }, timeoutMs = 5000, tls: tlsOpts } = {}) {
    return httpRequest(
        port,
        { method: 'POST', path: eioPath({ EIO: 4, transport: 'polling', sid }), headers, body },
        { timeoutMs, tls: tlsOpts },
    );
}

/** Split a polling payload into packets. */
export function decodePayload(text) {
    return text.length === 0 ? [] : text.split(RS);
}

// ---------------------------------------------------------------- WebSocket frames

export const OP = { CONT: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 };

/**
 * Encode one frame. `mask: false` sends it unmasked (illegal from a client); `rsv` is the
 * 3-bit RSV field; `payload` a string (UTF-8) or Buffer.
 */
export function encodeFrame({ opcode, payload = Buffer.alloc(0), fin = true, rsv = 0, mask = true, maskKey } = {}) {
    const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
    const len = data.length;
    let head;
    if (len < 126) {
        head = Buffer.alloc(2);
        head[1] = len;
    } else if (len < 65536) {
        head = Buffer.alloc(4);
        head[1] = 126;
        head.writeUInt16BE(len, 2);
    } else {
        head = Buffer.alloc(10);
        head[1] = 127;
        head.writeBigUInt64BE(BigInt(len), 2);
    }
    head[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
    if (!mask) return Buffer.concat([head, data]);
    head[1] |= 0x80;
    const key = maskKey ?? randomBytes(4);
    const masked = Buffer.alloc(len);
    for (let i = 0; i < len; i++) masked[i] = data[i] ^ key[i & 3];
    return Buffer.concat([head, key, masked]);
}

/** A close frame payload: 2-byte code + UTF-8 reason. */
export function closePayload(code, reason = '') {
    const r = Buffer.from(reason, 'utf8');
    const b = Buffer.alloc(2 + r.length);
    b.writeUInt16BE(code, 0);
    r.copy(b, 2);
    return b;
}

/** Take one frame from conn.buf, or undefined if incomplete. */
function parseFrame(conn) {
    const b = conn.buf;
    if (b.length < 2) return undefined;
    const fin = (b[0] & 0x80) !== 0;
    const rsv = (b[0] >> 4) & 7;
    const opcode = b[0] & 0x0f;
    const masked = (b[1] & 0x80) !== 0;
    let len = b[1] & 0x7f;
    let off = 2;
    if (len === 126) {
        if (b.length < 4) return undefined;
        len = b.readUInt16BE(2);
        off = 4;
    } else if (len === 127) {
        if (b.length < 10) return undefined;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
    }
    let key = null;
    if (masked) {
        if (b.length < off + 4) return undefined;
        key = b.subarray(off, off + 4);
        off += 4;
    }
    if (b.length < off + len) return undefined;
    let payload = Buffer.from(b.subarray(off, off + len));
    if (key) for (let i = 0; i < len; i++) payload[i] ^= key[i & 3];
    conn.buf = b.subarray(off + len);
    const frame = { fin, rsv, opcode, masked, payload, at: performance.now() };
    if (opcode === OP.CLOSE) {
        frame.code = len >= 2 ? payload.readUInt16BE(0) : null;
        frame.reason = len > 2 ? payload.subarray(2).toString('utf8') : '';
    }
    return frame;
}

/** A client WebSocket connection after a 101 (frames are masked unless told otherwise). */
export class RawWebSocket {
    constructor(conn, response) {
        this.conn = conn;
        this.response = response;
    }

    get closed() {
        return this.conn.closed;
    }

    /** Next frame, or null if the connection ended first. */
    nextFrame(timeoutMs = 5000) {
        return this.conn.waitFor(() => parseFrame(this.conn), timeoutMs, 'a WebSocket frame');
    }

    /** Next text/binary frame's payload as { text } or { binary }, skipping pings; throws on close. */
    async nextMessage(timeoutMs = 5000) {
        const deadline = performance.now() + timeoutMs;
        for (;;) {
            const f = await this.nextFrame(Math.max(1, deadline - performance.now()));
            if (f === null) throw new Error('connection closed while waiting for a message');
            if (f.opcode === OP.PING) continue;
            if (f.opcode === OP.TEXT) return { text: f.payload.toString('utf8'), frame: f };
            if (f.opcode === OP.BINARY) return { binary: f.payload, frame: f };
            throw new Error(`unexpected frame opcode ${f.opcode}${f.opcode === OP.CLOSE ? ` (close ${f.code} ${f.reason})` : ''}`);
        }
    }

    /** Next text message (an Engine.IO packet). */
    async nextText(timeoutMs = 5000) {
        const m = await this.nextMessage(timeoutMs);
        if (m.text === undefined) throw new Error('expected a text frame, got binary');
        return m.text;
    }

    send(frame) {
        return this.conn.write(encodeFrame(frame));
    }

    sendText(text, opts = {}) {
        return this.send({ opcode: OP.TEXT, payload: text, ...opts });
    }

    sendBinary(buf, opts = {}) {
        return this.send({ opcode: OP.BINARY, payload: buf, ...opts });
    }

    sendRaw(bytes) {
        return this.conn.write(bytes);
    }

    /**
     * Read until the server closes: resolves { code, reason, frame (the close frame or
     * null), frames (data frames seen before), tcpClosed }. When a close frame arrives it
     * is answered with a close frame (as a client should) and then the TCP close is awaited.
     */
    async waitClose(timeoutMs = 5000, { answer = true } = {}) {
        const deadline = performance.now() + timeoutMs;
        const frames = [];
        let closeFrame = null;
        for (;;) {
            const left = deadline - performance.now();
            if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for the server to close`);
            let f;
            try {
                f = await this.nextFrame(left);
            } catch (err) {
                throw new Error(`${err.message} (frames seen: ${frames.map((x) => x.opcode).join(',')})`);
            }
            if (f === null) break;
            if (f.opcode === OP.CLOSE) {
                closeFrame = f;
                if (answer) this.send({ opcode: OP.CLOSE, payload: f.payload.subarray(0, 2) });
                break;
            }
            frames.push(f);
        }
        const tcpClosed = await this.conn.waitClosed(Math.max(1, deadline - performance.now()));
        return {
            code: closeFrame ? closeFrame.code : null,
            reason: closeFrame ? closeFrame.reason : null,
            frame: closeFrame,
            frames,
            tcpClosed,
            closedAt: this.conn.closedAt,
        };
    }

    destroy() {
        this.conn.destroy();
    }
}

/** A random Sec-WebSocket-Key and its expected Sec-WebSocket-Accept. */
export function wsKeyPair() {
    const key = randomBytes(16).toString('base64');
    const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
    return { key, accept };
}

/**
 * Send a WebSocket upgrade request for `path`; resolves { response, ws } where ws is a
 * RawWebSocket when the server answered 101 with the right accept key, else null.
 */
export async function wsConnect(port, path, { headers = {}, tls: tlsOpts, timeoutMs = 5000 } = {}) {
    const conn = await RawConn.connect(port, { tls: tlsOpts });
    const { key, accept } = wsKeyPair();
    conn.write(
        buildRequest({
            path,
            headers: {
                Upgrade: 'websocket',
                Connection: 'Upgrade',
                'Sec-WebSocket-Key': key,
                'Sec-WebSocket-Version': '13',
                ...headers,
            },
        }),
    );
    let response;
    try {
        response = await conn.readHttpResponse(timeoutMs);
    } catch (err) {
        conn.destroy();
        throw err;
    }
    if (!response || response.status !== 101) {
        conn.destroy();
        return { response, ws: null };
    }
    if (response.headers['sec-websocket-accept'] !== accept) {
        conn.destroy();
        throw new Error(`bad Sec-WebSocket-Accept: ${response.headers['sec-websocket-accept']}`);
    }
    return { response, ws: new RawWebSocket(conn, response) };
}

/**
 * Engine.IO over a raw WebSocket (transport=websocket, or an upgrade with `sid`).
 * Without sid, waits for the open packet: resolves { ws, open, openedAt }.
 */
export async function eioWebSocket(port, { sid, tls: tlsOpts, timeoutMs = 5000 } = {}) {
    const { response, ws } = await wsConnect(port, eioPath({ EIO: 4, transport: 'websocket', sid }), { tls: tlsOpts, timeoutMs });
    if (!ws) throw new Error(`WebSocket upgrade refused: ${response ? `${response.status} ${response.text}` : 'connection closed'}`);
    if (sid) return { ws };
    const text = await ws.nextText(timeoutMs);
    const openedAt = performance.now();
    return { ws, open: parseOpen(text), openedAt };
}
