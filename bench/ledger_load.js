'use strict';
/*
 * The ledger bench's load generator (bench/ledger.py runs it; `ws` comes from NODE_PATH, installed at bench time).
 *
 *   node ledger_load.js CONFIG.json
 *       {"sockets": [{"url": "ws://127.0.0.1:PORT/v1/chat/ws?channel=ID", "token": JWT}, ...],
 *        "connectConcurrency": 16}
 *       Opens every socket (at most connectConcurrency handshakes at a time), signs each in with an
 *       auth frame ({"type": "auth", "token": JWT}) and waits for its AUTHENTICATED, then prints
 *       {"event": "ready", "sockets": N, "connect_seconds": S} and takes commands, one JSON line each,
 *       on stdin:
 *         {"cmd": "drive", "text": T, "seconds": S}
 *             every socket, for S seconds, in a closed loop: sends {"type": "send", "text": T,
 *             "nonce": N} (N unique: a random prefix, the socket's index and its counter), waits for
 *             the ACK or NOTICE whose nonce is N (send -> answer latency, performance.now()), and
 *             sends the next; a socket whose answer comes after the S seconds stops there.  Then one
 *             JSON line: {"per_s": ACKs / elapsed s, "acks", "notices": {code: count},
 *             "p50_ms", "p99_ms"} (percentiles: sorted, index min(n - 1, floor(q * n)), null if none);
 *         {"cmd": "quit"} (or the end of stdin)
 *             closes the sockets and exits.
 *       Each socket also receives every message of its room: the gateway's fan-out frames (one or
 *       several MESSAGEs joined by "\n") start with {"type":"MESSAGE" and are dropped on that prefix,
 *       unparsed; only frames that carry an ACK or a NOTICE are parsed.  The answers are frames of
 *       their own, but a frame is split on "\n" all the same.  A socket that closes, or that does not
 *       sign in, ends the process with exit code 1 and the reason on stderr.
 */

const { performance } = require('perf_hooks');
const crypto = require('crypto');
const fs = require('fs');
const readline = require('readline');
const WebSocket = require('ws');

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const FANOUT = Buffer.from('{"type":"MESSAGE"');
const ACK = Buffer.from('"type":"ACK"');
const NOTICE = Buffer.from('"type":"NOTICE"');
const PREFIX = crypto.randomBytes(6).toString('hex');
const MAX_LOGGED = 10;

// Read from the start, so that no command is lost while the sockets connect.
const commands = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
let logged = 0;

function die(why) {
  process.stderr.write(`ledger_load: ${why}\n`);
  process.exit(1);
}

function log(why) {
  if (logged++ < MAX_LOGGED) process.stderr.write(`ledger_load: ${why}\n`);
}

// One socket's closed loop; `drive` is the run in progress (null between runs).
class Client {
  constructor(index) {
    this.index = index;
    this.ws = null;
    this.n = 0;
    this.nonce = null;
    this.sentAt = 0;
    this.drive = null;
    this.closing = false;
  }

  open(url, token) {
    return new Promise((resolve) => {
      const ws = new WebSocket(url, { perMessageDeflate: false, skipUTF8Validation: true });
      let signedIn = false;
      ws.on('open', () => ws.send(JSON.stringify({ type: 'auth', token })));
      ws.on('message', (data) => {
        if (signedIn) { this.onFrame(data); return; }
        if (data.includes('"type":"AUTHENTICATED"')) {
          signedIn = true;
          this.ws = ws;
          resolve();
        } else if (data.includes('"type":"ERROR"')) {
          die(`socket ${this.index} could not sign in: ${data.toString().slice(0, 300)}`);
        }
      });
      ws.on('error', (err) => { if (!this.closing) die(`socket ${this.index}: ${err}`); });
      ws.on('close', (code, reason) => {
        if (!this.closing) die(`socket ${this.index} closed (${code} ${reason})${signedIn ? '' : ', not signed in'}`);
      });
      ws.on('unexpected-response', (req, res) => die(`socket ${this.index}: HTTP ${res.statusCode}`));
    });
  }

  send() {
    const run = this.drive;
    if (performance.now() >= run.stopAt) {
      this.drive = null;
      this.nonce = null;
      run.done();
      return;
    }
    this.nonce = `${PREFIX}-${this.index}-${this.n++}`;
    this.sentAt = performance.now();
    this.ws.send(JSON.stringify({ type: 'send', text: run.text, nonce: this.nonce }));
  }

  onFrame(data) {
    if (data.length >= FANOUT.length && data.compare(FANOUT, 0, FANOUT.length, 0, FANOUT.length) === 0) return;
    if (!data.includes(ACK) && !data.includes(NOTICE)) {
      if (data.includes('"type":"ERROR"')) log(`socket ${this.index}: ${data.toString().slice(0, 300)}`);
      return;
    }
    const now = performance.now();
    for (const line of data.toString().split('\n')) {
      if (!line.includes('"type":"ACK"') && !line.includes('"type":"NOTICE"')) continue;
      const answer = JSON.parse(line);
      if (this.nonce === null || (answer.type !== 'ACK' && answer.type !== 'NOTICE') || answer.nonce !== this.nonce) {
        continue;
      }
      this.drive.answered(answer, now - this.sentAt);
      this.send();
      return;
    }
  }
}

function pct(sorted, q) {
  if (sorted.length === 0) return null;
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] * 100) / 100;
}

function drive(clients, text, seconds) {
  return new Promise((resolve) => {
    const latencies = [];
    const notices = {};
    let acks = 0;
    let running = clients.length;
    const stopAt = performance.now() + seconds * 1000;
    const started = performance.now();
    const run = {
      text, stopAt,
      answered(answer, ms) {
        latencies.push(ms);
        if (answer.type === 'ACK') acks++;
        else notices[answer.code] = (notices[answer.code] || 0) + 1;
      },
      done() {
        if (--running > 0) return;
        const elapsed = (performance.now() - started) / 1000;
        const sorted = Float64Array.from(latencies).sort();
        resolve({
          per_s: Math.round(10 * acks / elapsed) / 10, acks, notices,
          p50_ms: pct(sorted, 0.5), p99_ms: pct(sorted, 0.99),
        });
      },
    };
    if (running === 0) { running = 1; run.done(); return; }
    for (const c of clients) {
      c.drive = run;
      c.send();
    }
  });
}

async function connectAll(sockets, concurrency) {
  const clients = sockets.map((_, i) => new Client(i));
  let next = 0;
  async function worker() {
    while (next < sockets.length) {
      const i = next++;
      await clients[i].open(sockets[i].url, sockets[i].token);
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, sockets.length) }, worker));
  return clients;
}

(async () => {
  const started = performance.now();
  const clients = await connectAll(config.sockets, config.connectConcurrency || 16);
  process.stdout.write(JSON.stringify({
    event: 'ready', sockets: clients.length, connect_seconds: +((performance.now() - started) / 1000).toFixed(2),
  }) + '\n');
  for await (const line of commands) {
    if (!line.trim()) continue;
    const cmd = JSON.parse(line);
    if (cmd.cmd === 'quit') break;
    if (cmd.cmd === 'drive') process.stdout.write(JSON.stringify(await drive(clients, cmd.text, cmd.seconds)) + '\n');
    else die(`unknown command ${line}`);
  }
  for (const c of clients) {
    c.closing = true;
    c.ws.close();
  }
  setTimeout(() => process.exit(0), 2000).unref();
  await Promise.all(clients.map((c) => new Promise((resolve) => {
    if (c.ws.readyState === WebSocket.CLOSED) resolve(); else c.ws.on('close', resolve);
  })));
  process.exit(0);
})();
