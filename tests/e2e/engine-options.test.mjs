// Engine.IO options of the echo example beyond the defaults: the allow-request
// hook (HTTP 403, error code 4), permessage-deflate (RFC 7692) and the session
// cookie. Server: $SOCKEYE_EIO_ECHO (default $top_builddir/examples/eio_echo).
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';
import { assertEchoWorks } from './lib/eio.mjs';
import * as R from './lib/raw.mjs';
import { startEioEcho } from './lib/server.mjs';

const require = createRequire(import.meta.url);
const WebSocket = require('ws');

const T = { timeout: 15000 };
const EVIL = 'http://evil.test';

describe('allow-request hook, permessage-deflate and cookie', () => {
    let srv;
    let port;
    before(async () => {
        srv = await startEioEcho(['--per-message-deflate', '1', '--cookie', 'io', '--deny-origin', EVIL]);
        port = srv.port;
    });
    after(async () => {
        await srv?.stop();
    });

    it('a refused handshake gets 403 with code 4 Forbidden (polling and websocket)', T, async () => {
        const res = await R.httpRequest(port, { path: R.eioPath({ EIO: 4, transport: 'polling' }), headers: { Origin: EVIL } });
        assert.equal(res.status, 403);
        assert.deepEqual(JSON.parse(res.text), { code: 4, message: 'Forbidden' });
        const ws = new WebSocket(`ws://127.0.0.1:${port}${R.eioPath({ EIO: 4, transport: 'websocket' })}`, { origin: EVIL });
        const status = await new Promise((resolve) => {
            ws.on('unexpected-response', (_req, r) => resolve(r.statusCode));
            ws.on('open', () => resolve(101));
            ws.on('error', () => resolve(-1));
        });
        ws.terminate();
        assert.notEqual(status, 101, 'the refused WebSocket handshake was not upgraded');
        const ok = await R.httpRequest(port, { path: R.eioPath({ EIO: 4, transport: 'polling' }), headers: { Origin: 'http://good.test' } });
        assert.equal(ok.status, 200, 'another origin is allowed');
        await assertEchoWorks(port);
    });

    it('the polling handshake sets the session cookie', T, async () => {
        const res = await R.httpRequest(port, { path: R.eioPath({ EIO: 4, transport: 'polling' }) });
        assert.equal(res.status, 200);
        const sid = JSON.parse(res.text.slice(1)).sid;
        const cookie = [].concat(res.headers['set-cookie'] ?? [])[0] ?? '';
        assert.match(cookie, new RegExp(`^io=${sid};`), cookie);
        assert.match(cookie, /Path=\//);
        assert.match(cookie, /HttpOnly/);
    });

    it('permessage-deflate is negotiated and large messages round-trip compressed', T, async () => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}${R.eioPath({ EIO: 4, transport: 'websocket' })}`, {
            perMessageDeflate: { threshold: 0 },
        });
        const frames = [];
        ws.on('message', (data, isBinary) => frames.push({ data, isBinary }));
        await new Promise((resolve, reject) => {
            ws.once('open', resolve);
            ws.once('error', reject);
        });
        try {
            assert.match(ws.extensions, /permessage-deflate/, 'negotiated');
            const big = '4' + 'sockeye '.repeat(4000);
            ws.send(big);
            ws.send(Buffer.alloc(5000, 7), { binary: true });
            const deadline = Date.now() + 5000;
            while (frames.length < 3 && Date.now() < deadline) await R.sleep(10);
            assert.equal(frames[0].data.toString()[0], '0', 'the open packet first');
            assert.equal(frames[1].data.toString(), big, 'text echoed');
            assert.ok(frames[2].isBinary && frames[2].data.equals(Buffer.alloc(5000, 7)), 'binary echoed');
        } finally {
            ws.terminate();
        }
    });

    it('without the extension offered, the same server answers uncompressed', T, async () => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}${R.eioPath({ EIO: 4, transport: 'websocket' })}`, {
            perMessageDeflate: false,
        });
        await new Promise((resolve, reject) => {
            ws.once('open', resolve);
            ws.once('error', reject);
        });
        assert.equal(ws.extensions, '');
        ws.terminate();
    });
});

describe('CORS with a list of origins and credentials', () => {
    let srv;
    let port;
    before(async () => {
        srv = await startEioEcho(['--cors', 'http://a.test, http://b.test', '--cors-credentials', '1']);
        port = srv.port;
    });
    after(async () => {
        await srv?.stop();
    });

    const handshake = (origin) =>
        R.httpRequest(port, { path: R.eioPath({ EIO: 4, transport: 'polling' }), headers: origin ? { Origin: origin } : {} });

    it('a listed origin is echoed with credentials allowed', T, async () => {
        for (const origin of ['http://a.test', 'http://b.test']) {
            const res = await handshake(origin);
            assert.equal(res.status, 200);
            assert.equal(res.headers['access-control-allow-origin'], origin);
            assert.equal(res.headers['access-control-allow-credentials'], 'true');
        }
    });

    it('an unlisted origin is not allowed', T, async () => {
        const res = await handshake('http://c.test');
        assert.equal(res.headers['access-control-allow-origin'], undefined);
    });

    it('a preflight from a listed origin gets 204 with the allowed methods and headers', T, async () => {
        const res = await R.httpRequest(port, {
            method: 'OPTIONS',
            path: R.eioPath({ EIO: 4, transport: 'polling' }),
            headers: { Origin: 'http://a.test', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
        });
        assert.equal(res.status, 204);
        assert.equal(res.headers['access-control-allow-origin'], 'http://a.test');
        assert.match(res.headers['access-control-allow-methods'] ?? '', /POST/);
        assert.match(res.headers['access-control-allow-headers'] ?? '', /content-type/i);
    });
});
