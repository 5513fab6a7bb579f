// An HTTP/2 WebSocket client (RFC 8441) on Node's built-in `http2` module, for interop with
// `wsx serve`: waits for the server's SETTINGS_ENABLE_CONNECT_PROTOCOL, opens two WebSockets as
// extended CONNECT streams of one connection, frames masked TEXT messages by hand, checks each
// echo, closes both with 1000 and checks the server's CLOSE.
//
// usage: node bench/node_h2_client.js http://127.0.0.1:PORT
// Prints `node-h2: ok ...` and exits 0, or prints what failed and exits 1.
'use strict';
const http2 = require('node:http2');
const crypto = require('node:crypto');

const base = process.argv[2];
if (!base) {
  console.error('usage: node_h2_client.js http://HOST:PORT');
  process.exit(2);
}
const fail = (what) => {
  console.error(`node-h2: FAIL ${what}`);
  process.exit(1);
};
setTimeout(() => fail('timed out after 20 s'), 20000).unref();

/// One client frame: FIN, opcode, MASK bit, length, key, masked payload.
function frame(opcode, payload) {
  const key = crypto.randomBytes(4);
  let head;
  if (payload.length < 126) {
    head = Buffer.from([0x80 | opcode, 0x80 | payload.length]);
  } else if (payload.length < 65536) {
    head = Buffer.alloc(4);
    head[0] = 0x80 | opcode;
    head[1] = 0x80 | 126;
    head.writeUInt16BE(payload.length, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(payload.length), 2);
  }
  const masked = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) masked[i] = payload[i] ^ key[i % 4];
  return Buffer.concat([head, key, masked]);
}

/// Reads whole server frames (unmasked) from a stream; resolves the next one on demand.
function reader(stream) {
  let buf = Buffer.alloc(0);
  const waiting = [];
  const parse = () => {
    while (waiting.length) {
      if (buf.length < 2) return;
      if (buf[1] & 0x80) fail('the server masked a frame');
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        off = 10;
      }
      if (buf.length < off + len) return;
      const f = { fin: !!(buf[0] & 0x80), opcode: buf[0] & 0x0f, payload: buf.subarray(off, off + len) };
      buf = buf.subarray(off + len);
      waiting.shift()(f);
    }
  };
  stream.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    parse();
  });
  return () => new Promise((resolve) => {
    waiting.push(resolve);
    parse();
  });
}

async function websocket(session, path) {
  const stream = session.request({
    ':method': 'CONNECT',
    ':protocol': 'websocket',
    ':scheme': 'http',
    ':path': path,
    'sec-websocket-version': '13',
  });
  const headers = await new Promise((resolve, reject) => {
    stream.on('response', resolve);
    stream.on('error', reject);
  });
  if (headers[':status'] !== 200) fail(`${path}: status ${headers[':status']}`);
  return { stream, next: reader(stream) };
}

async function main() {
  const session = http2.connect(base);
  session.on('error', (e) => fail(`session: ${e.message}`));
  await new Promise((resolve) => session.once('remoteSettings', resolve));
  if (!session.remoteSettings.enableConnectProtocol) {
    fail('the server did not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL');
  }
  const a = await websocket(session, '/echo');
  const b = await websocket(session, '/echo');
  for (const [name, ws, text] of [['a', a, 'hello from node'], ['b', b, 'x'.repeat(70000)]]) {
    ws.stream.write(frame(0x1, Buffer.from(text)));
    const echo = await ws.next();
    if (echo.opcode !== 0x1 || echo.payload.toString() !== text) {
      fail(`${name}: echo was opcode ${echo.opcode}, ${echo.payload.length} bytes`);
    }
  }
  for (const ws of [a, b]) {
    const close = Buffer.from([0x03, 0xe8]); // 1000
    ws.stream.write(frame(0x8, close));
    const reply = await ws.next();
    if (reply.opcode !== 0x8 || reply.payload.readUInt16BE(0) !== 1000) {
      fail(`close: got opcode ${reply.opcode}`);
    }
    ws.stream.end();
  }
  session.close();
  console.log('node-h2: ok (2 WebSockets on one HTTP/2 connection: echo 15 B and 70000 B, close 1000)');
}

main().catch((e) => fail(e.stack || String(e)));
