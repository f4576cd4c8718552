// Browser test of the chat example (examples/chat): two pages in headless
// Chromium log in, exchange messages, see each other type and see one leave.
// It saves a screenshot of the first page to tests/browser/chat.png
// (SOCKEYE_CHAT_SCREENSHOT=path to put it elsewhere).
//
// The server is the command in SOCKEYE_CHAT (a whole command line; the test
// appends `--port N`), by default `$top_builddir/sockeye -c
// examples/chat/sockeye.conf`. To prove the test against the reference backend:
//
//   SOCKEYE_CHAT="node tests/browser/ref_chat.mjs" node --test tests/browser/chat.test.mjs
//
// Chromium is the Debian package (/usr/bin/chromium, or CHROMIUM=path),
// driven by the npm playwright-core of tests/e2e. A missing browser or server
// binary fails the test; it never skips.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { test } from 'node:test';

import { REPO_ROOT, startServer } from '../e2e/lib/server.mjs';

const require = createRequire(path.join(REPO_ROOT, 'tests', 'e2e', 'package.json'));

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
];
// Committed with the sources; SOCKEYE_CHAT_SCREENSHOT redirects it (e.g. for a read-only source tree).
const SCREENSHOT = path.resolve(
    process.env.SOCKEYE_CHAT_SCREENSHOT || path.join(REPO_ROOT, 'tests', 'browser', 'chat.png'),
);
const VIEWPORT = { width: 720, height: 480 };
const TEST_MS = 55000; // the whole test, browser start and server stop included
const STEP_MS = 5000; // one wait for something a page should show

// The server command: SOCKEYE_CHAT, or the daemon on the example's config.
function chatCommandLine() {
    if (process.env.SOCKEYE_CHAT) return process.env.SOCKEYE_CHAT;
    const topBuilddir = path.resolve(process.env.top_builddir || REPO_ROOT);
    const exe = path.join(topBuilddir, 'sockeye');
    if (!existsSync(exe)) {
        throw new Error(
            `sockeye daemon not found: ${exe}\nBuild it first (make), or set SOCKEYE_CHAT to a ` +
                'server command, e.g. SOCKEYE_CHAT="node tests/browser/ref_chat.mjs".',
        );
    }
    return `${exe} -c ${path.join(REPO_ROOT, 'examples', 'chat', 'sockeye.conf')}`;
}

function loadPlaywright() {
    if (!existsSync(CHROMIUM)) {
        throw new Error(
            `Chromium not found at ${CHROMIUM}: install the Debian package ` +
                '(apt-get install -y chromium) or set CHROMIUM to its executable.',
        );
    }
    try {
        return require('playwright-core');
    } catch (err) {
        throw new Error(`playwright-core is not installed (cd tests/e2e && npm ci): ${err.message}`);
    }
}

/** Waits until an element matching `selector` has text matching `re`; returns that text. */
async function waitText(page, selector, re, what, timeout = STEP_MS) {
    try {
        const handle = await page.waitForFunction(
            ([sel, source, flags]) => {
                const rx = new RegExp(source, flags);
                const hit = [...document.querySelectorAll(sel)].find((el) => rx.test(el.textContent));
                return hit ? { text: hit.textContent } : false; // an object: "" is a match too
            },
            [selector, re.source, re.flags],
            { timeout, polling: 25 },
        );
        return (await handle.jsonValue()).text;
    } catch (err) {
        const seen = await page
            .$$eval(selector, (els) => els.map((el) => el.textContent))
            .catch((e) => [`(page unreadable: ${e.message})`]);
        throw new Error(
            `${what}: no ${selector} matching ${re} within ${timeout} ms; ` +
                `the page shows ${JSON.stringify(seen)} (${err.message.split('\n')[0]})`,
        );
    }
}

/** The texts of the notices / messages on a page, for assertions and failure messages. */
function listTexts(page, testid) {
    return page.$$eval(`#messages [data-testid="${testid}"]`, (els) => els.map((el) => el.textContent));
}

async function openAndLogin(context, url, name, errors) {
    const page = await context.newPage();
    page.on('pageerror', (err) => errors.push(`${name}: ${err.message}`));
    page.on('console', (msg) => {
        if (msg.type() === 'error') errors.push(`${name}: console: ${msg.text()}`);
    });
    page.on('response', (res) => {
        if (res.status() >= 400) errors.push(`${name}: HTTP ${res.status()} for ${res.url()}`);
    });
    await page.goto(url, { waitUntil: 'load', timeout: STEP_MS });
    await page.locator('#nickname').fill(name, { timeout: STEP_MS });
    await page.locator('#nickname').press('Enter', { timeout: STEP_MS });
    await page.locator('#chat').waitFor({ state: 'visible', timeout: STEP_MS });
    return page;
}

test('chat example: two users join, talk, type and leave', { timeout: TEST_MS }, async () => {
    const { chromium } = loadPlaywright();
    process.env.SOCKEYE_CHAT = chatCommandLine(); // startServer reads it and appends --port N
    const server = await startServer({ envVar: 'SOCKEYE_CHAT', defaultRel: 'sockeye' });
    const url = `http://127.0.0.1:${server.port}/`;
    const profile = mkdtempSync(path.join(os.tmpdir(), 'sockeye-chat-chromium-'));
    const errors = []; // JavaScript errors of the pages: any one fails the test
    let context = null;
    let failure = null;
    try {
        context = await chromium.launchPersistentContext(profile, {
            executablePath: CHROMIUM,
            headless: true,
            args: CHROMIUM_ARGS,
            viewport: VIEWPORT,
            deviceScaleFactor: 1,
            colorScheme: 'light',
            reducedMotion: 'reduce',
            locale: 'en-US',
            timeout: 20000,
        });
        context.setDefaultTimeout(STEP_MS);
        // The persistent context starts with one blank page; the test uses its own two.
        for (const p of context.pages()) await p.close();

        // alice logs in alone.
        const alice = await openAndLogin(context, url, 'alice', errors);
        const aliceLogin = await waitText(alice, '[data-testid="notice"][data-kind="login"]', /alice/, 'alice login');
        assert.match(aliceLogin, /\b1 person\b/, 'alice is the only user');
        assert.equal(await alice.locator('#user-count').textContent(), '1 online');
        assert.equal(await alice.locator('#status').getAttribute('data-state'), 'connected');

        // bob logs in: he gets the count, alice is told he joined, with the count.
        const bob = await openAndLogin(context, url, 'bob', errors);
        const bobLogin = await waitText(bob, '[data-testid="notice"][data-kind="login"]', /bob/, 'bob login');
        assert.match(bobLogin, /\b2 people\b/);
        const joined = await waitText(alice, '[data-testid="notice"][data-kind="joined"]', /bob/, 'alice sees bob join');
        assert.match(joined, /^bob joined\b.*\b2 people\b/);
        assert.equal(await alice.locator('#user-count').textContent(), '2 online');
        assert.equal(await bob.locator('#user-count').textContent(), '2 online');
        assert.deepEqual(await listTexts(bob, 'notice'), [bobLogin], 'bob sees no join notice of his own');

        // bob writes, alice reads it with his name; alice answers.
        await bob.locator('#message-input').fill('hello from bob');
        await bob.locator('#message-input').press('Enter');
        await waitText(alice, '[data-testid="message"]', /hello from bob/, 'alice gets bob\'s message');
        const fromBob = alice.locator('[data-testid="message"]', { hasText: 'hello from bob' });
        assert.equal(await fromBob.getAttribute('data-username'), 'bob');
        assert.equal(await fromBob.locator('.username').textContent(), 'bob');
        assert.equal(await fromBob.locator('.body').textContent(), 'hello from bob');
        assert.equal(await bob.locator('#message-input').inputValue(), '', 'the input is cleared after sending');

        await alice.locator('#message-input').fill('hi bob, welcome!');
        await alice.locator('#message-input').press('Enter');
        await waitText(bob, '[data-testid="message"]', /hi bob, welcome!/, 'bob gets alice\'s answer');
        assert.equal(
            await bob.locator('[data-testid="message"]', { hasText: 'hi bob' }).getAttribute('data-username'),
            'alice',
        );
        // Each page shows both messages once, in order (its own one locally, the other one relayed).
        for (const page of [alice, bob]) {
            assert.deepEqual(await listTexts(page, 'message'), ['bobhello from bob', 'alicehi bob, welcome!']);
        }

        // bob types without sending: alice sees the indicator, and it goes away once
        // bob's input has been idle (his page sends "stop typing").
        await waitText(alice, '#typing', /^$/, 'no typing indicator before bob types');
        await bob.locator('#message-input').pressSequentially('still typ', { delay: 20 });
        await waitText(alice, '#typing', /^bob is typing/, 'alice sees bob typing');
        await waitText(alice, '#typing', /^$/, 'the typing indicator goes away after "stop typing"', 3000);
        assert.equal(await bob.locator('#message-input').inputValue(), 'still typ', 'nothing was sent');
        assert.equal((await listTexts(alice, 'message')).length, 2, 'typing sends no message');
        assert.equal(await bob.locator('#typing').textContent(), '', 'bob does not see himself typing');

        // bob closes his page: alice is told he left, with the new count.
        await bob.close();
        const left = await waitText(alice, '[data-testid="notice"][data-kind="left"]', /bob/, 'alice sees bob leave');
        assert.match(left, /^bob left\b.*\b1 person\b/);
        assert.equal(await alice.locator('#user-count').textContent(), '1 online');
        assert.deepEqual(
            (await listTexts(alice, 'notice')).map((t) => t.replace(/ — .*/, '')),
            ['Welcome, alice', 'bob joined', 'bob left'],
            'alice saw exactly these notices',
        );
        assert.equal(await alice.locator('#status').getAttribute('data-state'), 'connected');

        await alice.screenshot({ path: SCREENSHOT, animations: 'disabled', caret: 'hide', timeout: STEP_MS });
        assert.ok(statSync(SCREENSHOT).size > 1000, 'the screenshot was written');
        assert.deepEqual(errors, [], 'no JavaScript errors or failed requests in the pages');
        server.assertAlive();
    } catch (err) {
        failure = err;
        if (server.exit) err.message += `\n${server.describe()}`;
    } finally {
        // Always: close the browser, remove its profile, stop the server.
        const cleanup = [];
        if (context) {
            let timer;
            await Promise.race([
                context.close(),
                new Promise((_, reject) => {
                    timer = setTimeout(() => reject(new Error('the browser did not close within 5 s')), 5000);
                }),
            ]).catch((e) => cleanup.push(e));
            clearTimeout(timer);
        }
        rmSync(profile, { recursive: true, force: true });
        await server.stop().catch((e) => cleanup.push(e));
        if (failure) throw failure;
        if (cleanup.length > 0) throw cleanup[0];
    }
});
