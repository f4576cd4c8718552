#!/usr/bin/env node
// Prints the markdown comparison table of one benchmark run:
//   node tests/bench/report.mjs RESULTS_DIR [scenario...]
// RESULTS_DIR holds <scenario>.<server>.<round>.json (one JSON line from
// sockeye-bench each), server = sockeye | reference. With several rounds each
// number is the median over the rounds. The ratio column is how many times better
// sockeye is: sockeye/reference for higher-is-better metrics,
// reference/sockeye for lower-is-better ones.
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const [dir, ...wanted] = process.argv.slice(2);
if (!dir) {
    process.stderr.write('usage: report.mjs RESULTS_DIR [scenario...]\n');
    process.exit(2);
}

const files = readdirSync(dir);

function median(values) {
    const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
    if (v.length === 0) return undefined;
    const mid = v.length >> 1;
    return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

// The rounds of one scenario on one server merged into one result: ok only if
// every round passed, numbers the median of the rounds.
function load(scenario, server) {
    const rounds = [];
    for (const f of files) {
        const m = f.match(/^(.+)\.(sockeye|reference)\.(\d+)\.json$/);
        if (!m || m[1] !== scenario || m[2] !== server) continue;
        try {
            const text = readFileSync(path.join(dir, f), 'utf8').trim();
            rounds.push(text ? JSON.parse(text) : { ok: false, first_error: 'empty result' });
        } catch {
            rounds.push({ ok: false, first_error: `unreadable ${f}` });
        }
    }
    if (rounds.length === 0) return null;
    const merged = { ok: rounds.every((r) => r.ok), rounds: rounds.length };
    merged.first_error = rounds.find((r) => !r.ok)?.first_error || '';
    for (const key of Object.keys(rounds[0])) {
        if (typeof rounds[0][key] === 'number') merged[key] = median(rounds.map((r) => r[key]));
    }
    return merged;
}

const ms = (us) => us / 1000;
const mb = (kb) => kb / 1024;
const HIGHER = 1;
const LOWER = -1;
const INFO = 0;

// [scenario, label(json), key, direction, scale]
const rows = [
    ['idle', (j) => `S1 server memory per idle client, ${j.connected} clients (bytes)`, 'bytes_per_client', LOWER],
    ['idle', () => 'S1 server RSS with all idle clients (MiB)', 'rss_after_kb', LOWER, mb],
    ['connect', (j) => `S2 handshakes/s, ${j.concurrency} in flight`, 'connections_per_s', HIGHER],
    ['connect', () => 'S2 handshake p50 (ms)', 'handshake_p50_us', LOWER, ms],
    ['connect', () => 'S2 handshake p99 (ms)', 'handshake_p99_us', LOWER, ms],
    ['echo', (j) => `S3 echo closed loop, ${j.clients} clients: acks/s`, 'acks_per_s', HIGHER],
    ['echo', () => 'S3 closed loop latency p50 (ms)', 'latency_p50_us', LOWER, ms],
    ['echo', () => 'S3 closed loop latency p99 (ms)', 'latency_p99_us', LOWER, ms],
    ['echo', () => 'S3 closed loop latency p99.9 (ms)', 'latency_p999_us', LOWER, ms],
    ['echo', () => 'S3 closed loop server CPU per ack (µs)', 'server_cpu_us_per_ack', LOWER],
    ['echo-paced', (j) => `S3 echo paced at ${j.target_rate}/s: acks/s`, 'acks_per_s', HIGHER],
    ['echo-paced', () => 'S3 paced latency p50 (ms)', 'latency_p50_us', LOWER, ms],
    ['echo-paced', () => 'S3 paced latency p99 (ms)', 'latency_p99_us', LOWER, ms],
    ['echo-paced', () => 'S3 paced latency p99.9 (ms)', 'latency_p999_us', LOWER, ms],
    ['echo-paced', () => 'S3 paced server CPU per ack (µs)', 'server_cpu_us_per_ack', LOWER],
    ['fanout', (j) => `S4 fan-out burst, ${j.receivers} receivers x ${j.messages} msgs: deliveries/s`, 'deliveries_per_s', HIGHER],
    ['fanout', () => 'S4 burst: time until all received (ms)', 'all_received_ms', LOWER],
    ['fanout', () => 'S4 burst latency p99 (ms)', 'latency_p99_us', LOWER, ms],
    ['fanout', () => 'S4 burst write syscalls per delivery', 'syscw_per_delivery', LOWER],
    ['fanout', () => 'S4 burst server CPU per delivery (µs)', 'server_cpu_us_per_delivery', LOWER],
    ['fanout-paced', (j) => `S4 fan-out paced, ${j.target_rate} msgs/s x ${j.receivers}: latency p50 (ms)`, 'latency_p50_us', LOWER, ms],
    ['fanout-paced', () => 'S4 paced latency p99 (ms)', 'latency_p99_us', LOWER, ms],
    ['fanout-paced', () => 'S4 paced write syscalls per delivery', 'syscw_per_delivery', LOWER],
    ['fanout-paced', () => 'S4 paced server CPU per delivery (µs)', 'server_cpu_us_per_delivery', LOWER],
    ['slow', (j) => `S5 ${j.slow_receivers} of ${j.receivers} receivers never read: server RSS peak (MiB)`, 'rss_peak_kb', LOWER, mb],
    ['slow', () => 'S5 healthy receivers: deliveries/s', 'deliveries_per_s', HIGHER],
    ['slow', () => 'S5 healthy receivers latency p99 (ms)', 'latency_p99_us', LOWER, ms],
    ['slow', () => 'S5 slow receivers disconnected by the server', 'slow_disconnected', INFO],
];

function fmt(v) {
    if (typeof v !== 'number' || !Number.isFinite(v)) return '—';
    if (v === 0) return '0';
    const a = Math.abs(v);
    if (a >= 100) return Math.round(v).toLocaleString('en-US');
    if (a >= 10) return v.toFixed(1);
    if (a >= 0.1) return v.toFixed(2);
    return v.toPrecision(2);
}

function cell(j, key, scale) {
    if (!j) return 'missing';
    if (!j.ok) return 'FAILED';
    const v = j[key];
    return typeof v === 'number' ? fmt(scale ? scale(v) : v) : '—';
}

function ratio(s, r, key, dir) {
    if (dir === INFO || !s?.ok || !r?.ok) return '';
    const a = s[key];
    const b = r[key];
    if (typeof a !== 'number' || typeof b !== 'number' || a <= 0 || b <= 0) return '—';
    return `${fmt(dir === HIGHER ? a / b : b / a)}×`;
}

const scenarios = wanted.length ? wanted : [...new Set(rows.map((r) => r[0]))];
const cpu = (os.cpus()[0]?.model || 'unknown CPU').trim();
console.log(`Machine: ${os.cpus().length} CPUs, ${cpu}; Linux ${os.release()}; node ${process.version}`);
const nrounds = Math.max(0, ...scenarios.flatMap((sc) => ['sockeye', 'reference'].map((sv) => load(sc, sv)?.rounds || 0)));
console.log(`Server pinned to CPU 0, generator to CPU 1; ${nrounds > 1 ? `median of ${nrounds} rounds` : 'one round'}. Ratio > 1: sockeye better.`);
console.log();
console.log('| metric | sockeye | reference | ratio |');
console.log('|---|---:|---:|---:|');
for (const [scenario, label, key, dir, scale] of rows) {
    if (!scenarios.includes(scenario)) continue;
    const s = load(scenario, 'sockeye');
    const r = load(scenario, 'reference');
    const any = s || r || {};
    console.log(`| ${label(any)} | ${cell(s, key, scale)} | ${cell(r, key, scale)} | ${ratio(s, r, key, dir)} |`);
}
const failed = [];
for (const scenario of scenarios) {
    for (const server of ['sockeye', 'reference']) {
        const j = load(scenario, server);
        if (!j?.ok) failed.push(`${scenario}/${server}: ${j?.first_error || 'no result'}`);
    }
}
console.log();
console.log(failed.length ? `Checks FAILED: ${failed.join('; ')}` : 'Checks: every receiver got every message in order, every ack matched (both servers).');
