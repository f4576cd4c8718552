// A promise-friendly wrapper around the real engine.io-client Socket (npm), for tests.
import { Socket } from 'engine.io-client';
import { withTimeout } from './raw.mjs';

/** Normalize a received binary message (Buffer, ArrayBuffer or view) to a Buffer. */
export function toBuffer(data) {
    if (Buffer.isBuffer(data)) return data;
    if (data instanceof ArrayBuffer) return Buffer.from(data);
    if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    throw new TypeError(`not binary: ${typeof data}`);
}

export class EioClient {
    /**
     * `transports`: e.g. ['polling'], ['websocket'], or ['polling', 'websocket'] with
     * upgrade: true. `opts` go to engine.io-client as they are (ca, rejectUnauthorized...).
     */
    constructor(url, opts = {}) {
        this.messages = [];
        this.waiters = [];
        this.pings = 0;
        this.closeInfo = null;
        this.upgraded = null;
        this.socket = new Socket(url, { transports: ['websocket'], upgrade: false, ...opts });
        this.socket.on('message', (data) => {
            this.messages.push(data);
            this.wake();
        });
        this.socket.on('ping', () => this.pings++);
        this.closed = new Promise((resolve) => {
            this.socket.on('close', (reason, description) => {
                this.closeInfo = { reason, description, at: performance.now() };
                this.wake();
                resolve(this.closeInfo);
            });
        });
        this.opened = new Promise((resolve, reject) => {
            this.socket.once('open', () => resolve(this));
            this.socket.once('error', (err) => reject(new Error(`engine.io-client error before open: ${err?.message ?? err}`)));
            this.closed.then((c) => reject(new Error(`closed before open: ${c.reason}`)));
        });
        this.opened.catch(() => {});
        this.upgradeDone = new Promise((resolve) => {
            this.socket.once('upgrade', (transport) => {
                this.upgraded = transport.name;
                resolve(transport.name);
            });
        });
    }

    /** Open a client and wait for 'open'. */
    static async open(url, opts = {}, timeoutMs = 5000) {
        const c = new EioClient(url, opts);
        try {
            await withTimeout(c.opened, timeoutMs, `engine.io-client open (${JSON.stringify(opts.transports)})`);
        } catch (err) {
            c.close();
            throw err;
        }
        return c;
    }

    get transport() {
        return this.socket.transport?.name;
    }

    get readyState() {
        return this.socket.readyState;
    }

    wake() {
        const ws = this.waiters;
        this.waiters = [];
        for (const w of ws) w();
    }

    send(data) {
        this.socket.send(data);
    }

    /** The next received message (string or Buffer); rejects on close or timeout. */
    next(timeoutMs = 5000) {
        return withTimeout(
            new Promise((resolve, reject) => {
                const check = () => {
                    if (this.messages.length) resolve(this.messages.shift());
                    else if (this.closeInfo) reject(new Error(`client closed: ${this.closeInfo.reason}`));
                    else this.waiters.push(check);
                };
                check();
            }),
            timeoutMs,
            'an echoed message',
        );
    }

    /** Send `data` and resolve the next message. */
    async echo(data, timeoutMs = 5000) {
        this.send(data);
        return this.next(timeoutMs);
    }

    /** Wait until the client is closed (by the server or a transport error). */
    waitClose(timeoutMs = 5000) {
        return withTimeout(this.closed, timeoutMs, 'the client to close');
    }

    close() {
        try {
            this.socket.close();
        } catch {
            // already closed
        }
    }
}

/** Health check: over WebSocket and over polling, open a client, echo once, close it. */
export async function assertEchoWorks(port, { scheme = 'http', opts = {} } = {}) {
    for (const transports of [['websocket'], ['polling']]) {
        const c = await EioClient.open(`${scheme}://127.0.0.1:${port}`, { transports, ...opts });
        try {
            const msg = `still alive via ${transports[0]}`;
            const got = await c.echo(msg);
            if (got !== msg) throw new Error(`health check echo mismatch: ${JSON.stringify(got)}`);
        } finally {
            c.close();
        }
    }
}
