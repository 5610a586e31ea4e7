'use strict';
/*
 * The chat bench's Node side (bench/chat.py runs it; `ws` comes from NODE_PATH, installed at bench time).
 *
 *   node chat_load.js serve '{"port": N, "coalesceMs": 0}'
 *       The reference broadcast server: accepts WebSockets on 127.0.0.1:N, groups them in rooms by
 *       ?channel=, sends each a small CONNECTED frame, and broadcasts every text frame it receives,
 *       as is (the received bytes, encoded once), to every socket of the room with ws's usual loop
 *       (`for (const c of room) if (c.readyState === OPEN) c.send(data)`).  With coalesceMs > 0 it
 *       queues a room's messages for that long and sends them joined by "\n" as one frame, as the
 *       gateway does; with 0 (the default) each message is its own frame.
 *
 *   node chat_load.js load CONFIG.json
 *       {"url": U, "clients": N, "senderUrls": [url, ...], "senderTokens": [jwt, ...],
 *        "mode": "gateway"|"reference", "receivers": "raw"|"ws", "textChars": 60, "connectConcurrency": 50}
 *       The load generator: opens N sockets, the first M to senderUrls (on the gateway each signs in
 *       with its token in an auth frame, then waits for AUTHENTICATED) and the others to U (read-only
 *       viewers), at most connectConcurrency handshakes at a
 *       time; waits for each one's first frame, prints {"event": "ready"}, then takes commands, one
 *       JSON line each, on stdin:
 *         {"cmd": "step", "rate": R, "warmup": W, "seconds": S, "drain": D}
 *             the senders send R messages/s in total (open loop, round robin) for W + S seconds;
 *             it prints {"event": "window_start"} and {"event": "window_end"} around the S measured
 *             seconds, then, once every client has been quiet for 0.5 s (or D seconds have passed),
 *             one JSON line with the step's figures;
 *         {"cmd": "quit"}
 *       Each message's text is "bench <step> <send time, ms> <seq> <padding>".  Every client splits
 *       frames on "\n" by scanning the raw frame bytes for `"text":"bench `; each hit is one
 *       delivery, and its latency is receive time - send time (one clock: one process).
 *       In "gateway" mode senders send {"type":"send","text","nonce"}; in "reference" mode they send
 *       an object shaped and sized like the gateway's MESSAGE, so both servers deliver the same bytes.
 *       Senders are `ws` clients.  The other clients ("receivers": "raw", the default) are plain TCP
 *       sockets that do the RFC 6455 handshake, walk the server's frames themselves (answering pings
 *       and closes) and scan each read once: far cheaper for the generator than a `ws` client per
 *       socket.  "receivers": "ws" makes them `ws` clients too.
 */

const { performance, monitorEventLoopDelay } = require('perf_hooks');
const crypto = require('crypto');
const fs = require('fs');
const net = require('net');
const readline = require('readline');
const WebSocket = require('ws');

const role = process.argv[2];
const arg = process.argv[3] || '{}';
const config = JSON.parse(arg.startsWith('{') ? arg : fs.readFileSync(arg, 'utf8'));

function serve(cfg) {
  const coalesceMs = cfg.coalesceMs || 0;
  const rooms = new Map();
  const wss = new WebSocket.WebSocketServer({
    host: '127.0.0.1', port: cfg.port, perMessageDeflate: false, maxPayload: 64 * 1024, clientTracking: false,
  });
  function broadcast(room, data) {
    for (const client of room.sockets) {
      if (client.readyState === WebSocket.OPEN) client.send(data, { binary: false });
    }
  }
  function flush(room) {
    room.timer = null;
    const pending = room.pending;
    room.pending = [];
    if (pending.length === 0) return;
    const parts = [];
    for (let i = 0; i < pending.length; i++) {
      if (i) parts.push(NEWLINE);
      parts.push(pending[i]);
    }
    broadcast(room, Buffer.concat(parts));
  }
  const NEWLINE = Buffer.from('\n');
  wss.on('connection', (ws, req) => {
    const channel = new URL(req.url, 'http://localhost').searchParams.get('channel') || '';
    let room = rooms.get(channel);
    if (room === undefined) {
      room = { sockets: new Set(), pending: [], timer: null };
      rooms.set(channel, room);
    }
    room.sockets.add(ws);
    ws.send(JSON.stringify({ type: 'CONNECTED', room: { channel_id: channel }, recent: [] }));
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      if (coalesceMs > 0) {
        room.pending.push(data);
        if (room.timer === null) room.timer = setTimeout(flush, coalesceMs, room);
      } else {
        broadcast(room, data);
      }
    });
    ws.on('close', () => room.sockets.delete(ws));
    ws.on('error', () => {});
  });
  wss.on('listening', () => process.stdout.write(JSON.stringify({ event: 'listening', port: cfg.port }) + '\n'));
}

// Latency histogram: 0.1 ms buckets up to 60 s.
const BUCKETS = 600001;

class Histogram {
  constructor() { this.counts = new Uint32Array(BUCKETS); this.n = 0; this.max = 0; }
  add(ms) {
    let b = Math.round(ms * 10);
    if (b < 0) b = 0; else if (b >= BUCKETS) b = BUCKETS - 1;
    this.counts[b]++;
    this.n++;
    if (ms > this.max) this.max = ms;
  }
  reset() { this.counts.fill(0); this.n = 0; this.max = 0; }
  pct(p) {
    if (this.n === 0) return null;
    const want = Math.ceil(this.n * p / 100);
    let seen = 0;
    for (let b = 0; b < BUCKETS; b++) {
      seen += this.counts[b];
      if (seen >= want) return b / 10;
    }
    return this.max;
  }
}

function load(cfg) {
  const MARK = Buffer.from('"text":"bench ');
  const urls = cfg.senderUrls.slice();
  const tokens = cfg.senderTokens || [];
  while (urls.length < cfg.clients) urls.push(cfg.url);
  const nSenders = cfg.senderUrls.length;
  const mode = cfg.mode || 'gateway';
  const padTo = cfg.textChars || 60;
  const concurrency = cfg.connectConcurrency || 200;
  const sockets = new Array(urls.length);
  const hist = new Histogram();
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  const notices = {};
  let acks = 0;
  const ackHist = new Histogram();  // send -> ACK on the gateway, for messages sent in the window
  const sentAtByNonce = new Map();
  let step = 0;
  // Per step: the measured window [t0, t1] in performance.now() ms.
  let t0 = Infinity, t1 = -Infinity;
  let windowDeliveries = 0;      // deliveries received inside the window
  let windowBytes = 0;           // frame bytes received inside the window
  let windowFrames = 0;
  let ofWindowDelivered = 0;     // deliveries (any time) of messages sent inside the window
  let lastDelivery = 0;
  let connectFailures = 0;
  let connectError = null;
  let disconnects = 0;
  const receivers = cfg.receivers || 'raw';

  // Deliveries in data[start, end): each `"text":"bench ` is one message; its latency is now - send time.
  function scan(data, start, end, now) {
    const inWindow = now >= t0 && now <= t1;
    let hits = 0;
    let pos = data.indexOf(MARK, start);
    while (pos >= 0 && pos < end) {
      hits++;
      let i = pos + MARK.length;
      let s = 0, c;
      while ((c = data[i]) !== 32) { s = s * 10 + (c - 48); i++; }
      i++;
      let ms = 0;
      while ((c = data[i]) !== 46 && c !== 32) { ms = ms * 10 + (c - 48); i++; }
      if (c === 46) {
        i++;
        let scale = 0.1;
        while ((c = data[i]) !== 32) { ms += (c - 48) * scale; scale /= 10; i++; }
      }
      lastDelivery = now;
      if (s === step) {
        if (inWindow) { windowDeliveries++; hist.add(now - ms); }
        if (ms >= t0 && ms <= t1) ofWindowDelivered++;
      }
      pos = data.indexOf(MARK, i);
    }
    return hits;
  }

  function onFrame(data) {
    const now = performance.now();
    if (now >= t0 && now <= t1) { windowBytes += data.length; windowFrames++; }
    return scan(data, 0, data.length, now) > 0;
  }

  function onSenderFrame(data) {
    const str = data.toString();
    for (const line of str.split('\n')) {
      let obj;
      try { obj = JSON.parse(line); } catch (e) { continue; }
      if (obj.type === 'ACK') {
        acks++;
        const sentAt = sentAtByNonce.get(obj.nonce);
        if (sentAt !== undefined) {
          sentAtByNonce.delete(obj.nonce);
          if (sentAt >= t0 && sentAt <= t1) ackHist.add(performance.now() - sentAt);
        }
      }
      else if (obj.type === 'NOTICE' || obj.type === 'ERROR') notices[obj.code] = (notices[obj.code] || 0) + 1;
    }
  }

  function failed(resolve, why) {
    connectFailures++;
    connectError = connectError || why;
    resolve(false);
  }

  // A sender: a `ws` client (it sends, and reads its ACKs and NOTICEs).
  function openWs(index) {
    return new Promise((resolve) => {
      const ws = new WebSocket(urls[index], { perMessageDeflate: false, skipUTF8Validation: true });
      const token = tokens[index];
      let first = true;
      ws.on('open', () => { if (token) ws.send(JSON.stringify({ type: 'auth', token })); });
      ws.on('message', (data) => {
        if (first && token && !data.toString().includes('"type":"AUTHENTICATED"')) return;   // CONNECTED first
        if (first) { first = false; sockets[index] = ws; resolve(true); return; }
        if (!onFrame(data) && index < nSenders) onSenderFrame(data);
      });
      ws.on('error', (err) => { if (first) { first = false; failed(resolve, String(err)); } });
      ws.on('close', (code, reason) => {
        if (first) { first = false; failed(resolve, `closed ${code} ${reason}`); } else disconnects++;
      });
      ws.on('unexpected-response', (req, res) => {
        req.destroy();
        if (first) { first = false; failed(resolve, `HTTP ${res.statusCode}`); }
      });
    });
  }

  // A viewer over a plain TCP socket: the RFC 6455 handshake, then each read is walked frame by frame
  // (server frames are unmasked) to answer pings and find where complete frames end, and the complete
  // frames are scanned for deliveries in one pass; an incomplete last frame waits for the next read.
  function openRaw(index) {
    return new Promise((resolve) => {
      const url = new URL(urls[index]);
      let handshake = true, first = true, tail = null;
      const sock = net.connect({
        host: url.hostname, port: +url.port, noDelay: true,
        onread: { buffer: READ_BUFFER, callback: (nread, buffer) => { onData(buffer.subarray(0, nread)); } },
      });
      sock.on('connect', () => {
        sock.write(`GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n` +
          'Sec-WebSocket-Version: 13\r\n\r\n');
      });
      function onData(chunk) {
        const now = performance.now();
        const buf = tail === null ? chunk : Buffer.concat([tail, chunk]);
        tail = null;
        let off = 0;
        if (handshake) {
          const endOfHead = buf.indexOf('\r\n\r\n');
          if (endOfHead < 0) { tail = Buffer.from(buf); return; }
          if (buf.toString('latin1', 0, 12) !== 'HTTP/1.1 101') {
            first = false;
            sock.destroy();
            failed(resolve, buf.toString('latin1', 0, Math.min(endOfHead, 80)));
            return;
          }
          handshake = false;
          off = endOfHead + 4;
        }
        const begin = off;
        const inWindow = now >= t0 && now <= t1;
        let frames = 0;
        while (off + 2 <= buf.length) {
          const opcode = buf[off] & 0x0f;
          let len = buf[off + 1] & 0x7f, head = 2;
          if (len === 126) {
            if (off + 4 > buf.length) break;
            len = buf.readUInt16BE(off + 2); head = 4;
          } else if (len === 127) {
            if (off + 10 > buf.length) break;
            len = Number(buf.readBigUInt64BE(off + 2)); head = 10;
          }
          if (off + head + len > buf.length) break;
          if (opcode === 0x9) sendControl(sock, 0xa, buf.subarray(off + head, off + head + len));
          else if (opcode === 0x8) {
            sendControl(sock, 0x8, buf.subarray(off + head, off + head + Math.min(len, 2)));
            sock.end();
          } else frames++;
          off += head + len;
        }
        if (off < buf.length) tail = Buffer.from(buf.subarray(off));
        if (frames === 0) return;
        if (first) { first = false; sockets[index] = sock; resolve(true); return; }
        if (inWindow) { windowBytes += off - begin; windowFrames += frames; }
        scan(buf, begin, off, now);
      }
      sock.on('error', (err) => { if (first) { first = false; failed(resolve, String(err)); } });
      sock.on('close', () => { if (first) { first = false; failed(resolve, 'closed'); } else disconnects++; });
    });
  }

  // One read buffer for every viewer socket: reads are handled synchronously, and a partial frame is copied out.
  const READ_BUFFER = Buffer.alloc(256 * 1024);

  // A masked control frame (pong, close) from the client.
  function sendControl(sock, opcode, payload) {
    const mask = crypto.randomBytes(4);
    const frame = Buffer.alloc(6 + payload.length);
    frame[0] = 0x80 | opcode;
    frame[1] = 0x80 | payload.length;
    mask.copy(frame, 2);
    for (let i = 0; i < payload.length; i++) frame[6 + i] = payload[i] ^ mask[i & 3];
    if (!sock.destroyed) sock.write(frame);
  }

  function open(index) {
    return index < nSenders || receivers === 'ws' ? openWs(index) : openRaw(index);
  }

  async function connectAll() {
    let next = 0;
    const started = performance.now();
    async function worker() {
      while (next < urls.length) await open(next++);
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, urls.length) }, worker));
    return (performance.now() - started) / 1000;
  }

  let messageSeq = 0;
  function textFor(sentAt) {
    const head = `bench ${step} ${sentAt.toFixed(3)} ${messageSeq} `;
    return head.length >= padTo ? head : head + 'x'.repeat(padTo - head.length);
  }
  const userIds = [];
  for (let i = 0; i < nSenders; i++) userIds.push(crypto.randomUUID());
  const channelId = crypto.randomUUID();

  function sendOne(senderIndex) {
    const ws = sockets[senderIndex];
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    const sentAt = performance.now();
    const text = textFor(sentAt);
    const nonce = `n${step}-${messageSeq}`;
    messageSeq++;
    let frame;
    if (mode === 'reference') {
      frame = JSON.stringify({
        type: 'MESSAGE', id: crypto.randomUUID(), channel_id: channelId,
        user: { id: userIds[senderIndex], username: `bench_sender_${senderIndex}`, badges: [] },
        text, emotes: [], nonce, sent_at_ms: Date.now(),
      });
    } else {
      frame = JSON.stringify({ type: 'send', text, nonce });
      sentAtByNonce.set(nonce, sentAt);
    }
    ws.send(frame);
    return sentAt >= t0 && sentAt <= t1;
  }

  function runStep(cmd) {
    return new Promise((resolve) => {
      step++;
      messageSeq = 0;
      hist.reset();
      windowDeliveries = 0; windowBytes = 0; windowFrames = 0; ofWindowDelivered = 0;
      for (const k of Object.keys(notices)) delete notices[k];
      acks = 0;
      ackHist.reset();
      sentAtByNonce.clear();
      const start = performance.now();
      t0 = start + cmd.warmup * 1000;
      t1 = t0 + cmd.seconds * 1000;
      let sent = 0, sentInWindow = 0, rr = 0;
      let cpu0 = null, loop0 = false;
      let windowStarted = false;
      const maxBurst = Math.max(1, Math.ceil(cmd.rate * 0.05));
      function tick() {
        const now = performance.now();
        if (!windowStarted && now >= t0) {
          windowStarted = true;
          cpu0 = process.cpuUsage();
          loopDelay.reset(); loopDelay.enable(); loop0 = true;
          process.stdout.write('{"event":"window_start"}\n');
        }
        if (now >= t1) {
          const cpu = process.cpuUsage(cpu0);
          loopDelay.disable();
          process.stdout.write('{"event":"window_end"}\n');
          const sendEnd = performance.now();
          const drainUntil = sendEnd + (cmd.drain || 5) * 1000;
          const waitQuiet = () => {
            const n = performance.now();
            if (n - Math.max(lastDelivery, sendEnd) >= 500 || n >= drainUntil) {
              const seconds = (t1 - t0) / 1000;
              const clients = urls.length;
              resolve({
                event: 'step', step, rate_target: cmd.rate, seconds: +seconds.toFixed(3),
                messages_in_per_s: +(sentInWindow / seconds).toFixed(2), messages_in_window: sentInWindow,
                deliveries: windowDeliveries, deliveries_per_s: Math.round(windowDeliveries / seconds),
                frames_per_s: Math.round(windowFrames / seconds),
                mbytes_per_s: +(windowBytes / seconds / 1e6).toFixed(2),
                p50_ms: hist.pct(50), p90_ms: hist.pct(90), p99_ms: hist.pct(99), max_ms: +hist.max.toFixed(1),
                expected_of_window: sentInWindow * clients, delivered_of_window: ofWindowDelivered,
                completeness: sentInWindow ? +(ofWindowDelivered / (sentInWindow * clients)).toFixed(4) : null,
                acks, ack_p50_ms: ackHist.pct(50), ack_p99_ms: ackHist.pct(99), notices: { ...notices }, disconnects,
                loadgen_cpu_percent_of_core: +(100 * (cpu.user + cpu.system) / 1e6 / seconds).toFixed(1),
                loadgen_system_cpu_percent_of_core: +(100 * cpu.system / 1e6 / seconds).toFixed(1),
                loadgen_loop_delay_p99_ms: loop0 ? +(loopDelay.percentile(99) / 1e6).toFixed(1) : null,
              });
            } else {
              setTimeout(waitQuiet, 50);
            }
          };
          setTimeout(waitQuiet, 50);
          return;
        }
        const due = Math.min(Math.floor(cmd.rate * (now - start) / 1000) - sent, maxBurst);
        for (let k = 0; k < due; k++) {
          if (sendOne(rr)) sentInWindow++;
          sent++;
          rr = (rr + 1) % nSenders;
        }
        setTimeout(tick, 1);
      }
      tick();
    });
  }

  (async () => {
    const seconds = await connectAll();
    process.stdout.write(JSON.stringify({
      event: 'ready', clients: urls.length - connectFailures, connect_failures: connectFailures,
      connect_error: connectError, connect_seconds: +seconds.toFixed(2),
    }) + '\n');
    const rl = readline.createInterface({ input: process.stdin });
    for await (const line of rl) {
      if (!line.trim()) continue;
      const cmd = JSON.parse(line);
      if (cmd.cmd === 'quit') break;
      if (cmd.cmd === 'step') process.stdout.write(JSON.stringify(await runStep(cmd)) + '\n');
    }
    for (const sock of sockets) if (sock) (sock instanceof WebSocket ? sock.terminate() : sock.destroy());
    process.exit(0);
  })();
}

if (role === 'serve') serve(config);
else if (role === 'load') load(config);
else {
  process.stderr.write('usage: node chat_load.js serve|load JSON\n');
  process.exit(2);
}
