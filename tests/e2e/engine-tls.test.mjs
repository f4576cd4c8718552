// The Engine.IO echo example over TLS (--tls-cert/--tls-key): HTTPS long-polling and WSS,
// with a self-signed certificate made by the openssl CLI for this run.
//
// Server: $SOCKEYE_EIO_ECHO (default $top_builddir/examples/eio_echo).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EioClient, toBuffer } from './lib/eio.mjs';
import * as R from './lib/raw.mjs';
import { eioEchoCommand, startEioEcho } from './lib/server.mjs';

const T = { timeout: 15000 };

function makeCert(dir) {
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    execFileSync(
        'openssl',
        [
            'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
            '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost',
            '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    return { cert, key, ca: readFileSync(cert) };
}

function httpsGet(port, pathAndQuery, opts) {
    return new Promise((resolve, reject) => {
        const req = https.get({ host: '127.0.0.1', port, path: pathAndQuery, ...opts }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8'), socket: res.socket }));
            res.on('error', reject);
        });
        req.on('error', reject);
        req.setTimeout(5000, () => req.destroy(new Error('https.get timed out')));
    });
}

it('the server under test exists', () => {
    eioEchoCommand();
});

describe('TLS (--tls-cert, --tls-key)', () => {
    let dir;
    let tls;
    let srv;
    let url;
    before(async () => {
        dir = mkdtempSync(path.join(tmpdir(), 'sockeye-e2e-tls-'));
        tls = makeCert(dir);
        srv = await startEioEcho(['--tls-cert', tls.cert, '--tls-key', tls.key]);
        url = `https://127.0.0.1:${srv.port}`;
    });
    after(async () => {
        try {
            await srv?.stop();
        } finally {
            if (dir) rmSync(dir, { recursive: true, force: true });
        }
    });

    it('an HTTPS polling handshake succeeds and the certificate is the one given', T, async () => {
        const res = await httpsGet(srv.port, R.eioPath({ EIO: 4, transport: 'polling' }), { ca: tls.ca, agent: false });
        assert.equal(res.status, 200);
        const open = R.parseOpen(res.text);
        assert.deepEqual(open.upgrades, ['websocket']);
        assert.equal(res.socket.encrypted, true);
    });

    it('plain HTTP on the TLS port gets no Engine.IO answer', T, async () => {
        let res = null;
        try {
            res = await R.httpRequest(srv.port, { path: R.eioPath({ EIO: 4, transport: 'polling' }) }, { timeoutMs: 3000 });
        } catch {
            res = null; // reset, timeout or garbage instead of HTTP: all fine
        }
        assert.ok(res === null || !(res.status === 200 && res.text.startsWith('0{')), 'a plaintext handshake must not succeed');
        srv.assertAlive();
    });

    it('a client that does not trust the certificate cannot connect', T, async () => {
        await assert.rejects(httpsGet(srv.port, R.eioPath({ EIO: 4, transport: 'polling' }), { agent: false }), /self[- ]signed|certificate/i);
        for (const transports of [['polling'], ['websocket']]) {
            await assert.rejects(EioClient.open(url, { transports, upgrade: false }, 5000), `${transports[0]} without the CA must fail`);
        }
    });

    for (const [name, opts, transport] of [
        ['polling', { transports: ['polling'], upgrade: false }, 'polling'],
        ['websocket', { transports: ['websocket'], upgrade: false }, 'websocket'],
        ['polling upgraded to websocket', { transports: ['polling', 'websocket'], upgrade: true }, 'websocket'],
    ]) {
        it(`engine.io-client over ${name} with the CA: text and binary echo`, T, async () => {
            const c = await EioClient.open(url, { ...opts, ca: tls.ca });
            try {
                if (opts.upgrade) assert.equal(await R.withTimeout(c.upgradeDone, 5000, 'upgrade'), 'websocket');
                assert.equal(c.transport, transport);
                assert.equal(await c.echo('hello över TLS ✓'), 'hello över TLS ✓');
                const big = 'z'.repeat(200000);
                assert.equal(await c.echo(big), big);
                const bin = randomBytes(70000);
                assert.deepEqual(toBuffer(await c.echo(bin)), bin);
                for (let i = 0; i < 100; i++) c.send(`n${i}`);
                for (let i = 0; i < 100; i++) assert.equal(await c.next(), `n${i}`);
            } finally {
                c.close();
            }
        });
    }

    it('engine.io-client with rejectUnauthorized: false also works (websocket)', T, async () => {
        const c = await EioClient.open(url, { transports: ['websocket'], rejectUnauthorized: false });
        try {
            assert.equal(await c.echo('insecure but encrypted'), 'insecure but encrypted');
        } finally {
            c.close();
        }
    });

    it('raw WSS: the TLS session is verified and frames echo', T, async () => {
        const { ws, open } = await R.eioWebSocket(srv.port, { tls: { ca: tls.ca } });
        try {
            assert.equal(ws.conn.sock.encrypted, true);
            assert.equal(ws.conn.sock.authorized, true);
            assert.deepEqual(open.upgrades, []);
            ws.sendText('4wss');
            assert.equal(await ws.nextText(), '4wss');
            const bin = randomBytes(300000);
            ws.sendBinary(bin);
            assert.deepEqual((await ws.nextMessage()).binary, bin);
            ws.sendText(Buffer.from([0x34, 0xff]));
            assert.equal((await ws.waitClose(3000)).code, 1007);
        } finally {
            ws.destroy();
        }
    });

    it('a TLS connection that sends junk instead of a handshake is dropped; others are served', T, async () => {
        const c = await R.RawConn.connect(srv.port);
        try {
            c.write(Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8]));
            c.write(randomBytes(2048));
            assert.ok(await c.waitEnded(3000), 'the server drops the connection');
        } finally {
            c.destroy();
        }
        srv.assertAlive();
        const res = await httpsGet(srv.port, R.eioPath({ EIO: 4, transport: 'polling' }), { ca: tls.ca, agent: false });
        assert.equal(res.status, 200);
    });
});
