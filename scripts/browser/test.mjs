// Drives Debian's Chromium (through playwright-core, no downloaded browsers) against the page of
// a running `wsx serve`. Started by scripts/browser_test.sh, which builds and starts the server.
//
// Environment (set by the shell script):
//   WSX_HTTP        base URL of the server, e.g. http://127.0.0.1:40123
//   WSX_SERVER_LOG  the server's stderr (tracing log), read for the close codes it saw
//   WSX_HTTPS       base URL of a second server with TLS (h2 by ALPN), e.g. https://127.0.0.1:40124
//   WSX_TLS_SERVER_LOG  its stderr, read for the HTTP version each request and socket came over
//   SCREENSHOT      where to save the PNG of page 1 after the echoes
//   CHROMIUM        browser binary (default /usr/bin/chromium)
//   TEST_TIMEOUT    seconds before everything is abandoned (default 110)
//
// Prints one line per check and finally `browser: N passed, M failed`; exits 1 if M > 0.

import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";
import net from "node:net";

const BASE = process.env.WSX_HTTP;
const SERVER_LOG = process.env.WSX_SERVER_LOG;
const HTTPS = process.env.WSX_HTTPS;
const TLS_SERVER_LOG = process.env.WSX_TLS_SERVER_LOG;
const SCREENSHOT = process.env.SCREENSHOT;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const TEST_TIMEOUT = Number(process.env.TEST_TIMEOUT || 110) * 1000;
const STEP_TIMEOUT = 15_000;

if (!BASE || !SERVER_LOG || !HTTPS || !TLS_SERVER_LOG || !SCREENSHOT) {
  console.error("browser: WSX_HTTP, WSX_SERVER_LOG, WSX_HTTPS, WSX_TLS_SERVER_LOG and SCREENSHOT " +
    "must be set (run scripts/browser_test.sh)");
  process.exit(2);
}

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) {
    passed++;
    console.log(`  ok    ${name}`);
  } else {
    failed++;
    console.log(`  FAIL  ${name}${detail ? `: ${detail}` : ""}`);
  }
  return ok;
}
function summary() {
  console.log(`browser: ${passed} passed, ${failed} failed`);
}
const short = (s, n = 120) => {
  s = String(s);
  return s.length > n ? `${s.slice(0, n)}... (${s.length} chars)` : s;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let browser = null;
let proxy = null;

// Everything is bounded: past TEST_TIMEOUT the run fails at once (playwright-core kills the
// browser process, and removes its temporary profile, when node exits).
const watchdog = setTimeout(() => {
  failed++;
  console.log(`  FAIL  global timeout: the run took over ${TEST_TIMEOUT / 1000} s`);
  console.log(readFileSync(SERVER_LOG, "utf8").trimEnd().split("\n").slice(-30).join("\n"));
  summary();
  process.exit(1);
}, TEST_TIMEOUT);

// ---- page helpers -----------------------------------------------------------------------

/** Log lines of a `.log` box: `{cls, text}` with the leading local time cut off. */
async function logLines(page, box) {
  const lines = await page.$$eval(`#${box} > div`, (els) =>
    els.map((e) => ({ cls: e.className, text: e.textContent })));
  return lines.map(({ cls, text }) => {
    const i = text.indexOf("  "); // the page writes "<time>  <text>"
    return { cls, text: i >= 0 ? text.slice(i + 2) : text };
  });
}

/** Waits until `#id` reads `want`; records a check either way. */
async function expectText(page, id, want, name) {
  try {
    await page.waitForFunction(
      ([id, want]) => document.getElementById(id)?.textContent === want, [id, want],
      { timeout: STEP_TIMEOUT });
    return check(name, true);
  } catch {
    const got = await page.textContent(`#${id}`).catch((e) => `<${e.message}>`);
    return check(name, false, `#${id} is "${got}", expected "${want}"`);
  }
}

/** Waits until the box has at least `n` lines of class `cls`; returns them (maybe fewer). */
async function waitLines(page, box, cls, n) {
  try {
    await page.waitForFunction(
      ([box, cls, n]) => document.querySelectorAll(`#${box} > div.${cls}`).length >= n,
      [box, cls, n], { timeout: STEP_TIMEOUT });
  } catch { /* the caller's check reports what arrived */ }
  return (await logLines(page, box)).filter((l) => l.cls === cls);
}

/** Compares two lists of strings; a short description of the first difference, or "". */
function diff(got, want) {
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    if (got[i] !== want[i]) {
      return `line ${i}: got ${got[i] === undefined ? "nothing" : JSON.stringify(short(got[i]))}, ` +
        `expected ${want[i] === undefined ? "nothing" : JSON.stringify(short(want[i]))} ` +
        `(${got.length} lines, expected ${want.length})`;
    }
  }
  return "";
}

/** Types `text` into the input and sends it with the button (or Enter). */
async function send(page, input, button, text, { enter = false } = {}) {
  await page.fill(`#${input}`, text);
  if (enter) await page.press(`#${input}`, "Enter");
  else await page.click(`#${button}`);
}

/** A pseudo-random but compressible text of at least `bytes` UTF-8 bytes (some multi-byte). */
function longText(bytes) {
  const words = ["frame", "mask", "deflate", "window", "context", "takeover", "payload", "opcode",
    "naïve", "café", "Ωμέγα", "€", "socket", "close", "ping", "pong", "text", "binary", "fin", "rsv1"];
  let seed = 12345;
  const parts = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const w = words[(seed >>> 16) % words.length] + (i % 97 === 0 ? `#${i}` : "");
    parts.push(w);
    size += Buffer.byteLength(w) + 1;
  }
  return "long: " + parts.join(" ");
}

/**
 * Whether a log line is the page's report of a clean close. The page shows the code (and reason)
 * of the close frame the server answered with: 1000, or 1005 for an empty close frame; the
 * server need not repeat the reason ("bye") the page sent.
 */
const cleanClose = (l) => l?.cls === "sys" && /^closed: code 100[05]( \(.*\))?$/.test(l.text);

/** The lines of a server's tracing log, without colours. */
const logOf = (file) => readFileSync(file, "utf8").replace(/\x1b\[[0-9;]*m/g, "").split("\n");

/** Close lines of the server's tracing log: `{path, code, clean}`. */
function serverCloses(file = SERVER_LOG) {
  return logOf(file).filter((l) => / close /.test(l) && /\bcode=/.test(l)).map((l) => ({
    path: (l.match(/\bpath=(\S+)/) || [])[1],
    code: Number((l.match(/\bcode=(\d+)/) || [])[1]),
    clean: (l.match(/\bclean=(\w+)/) || [])[1],
  }));
}

/** A TCP relay to the server that counts the bytes each way (to see compression on the wire). */
function startProxy(port) {
  const counts = { up: 0, down: 0 };
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    client.on("data", (d) => { counts.up += d.length; });
    upstream.on("data", (d) => { counts.down += d.length; });
    client.pipe(upstream).on("error", () => {});
    upstream.pipe(client).on("error", () => {});
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () =>
    resolve({ server, counts, port: server.address().port })));
}

// ---- the run ----------------------------------------------------------------------------

async function newPage(label) {
  // A context per page: separate cookies/storage, like separate browser profiles.
  const context = await browser.newContext({
    viewport: { width: 1000, height: 700 }, deviceScaleFactor: 1,
    locale: "en-US", timezoneId: "UTC",
  });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(`${label}: ${e.message}`));
  // The DevTools protocol sees the real handshake, including the extension the server chose.
  const cdp = await context.newCDPSession(page);
  page.handshakes = [];
  // The HTTP version of each response ("h2", "http/1.1"), as Chromium's network stack saw it.
  page.protocols = [];
  cdp.on("Network.responseReceived", (e) => {
    page.protocols.push({ url: e.response.url, protocol: e.response.protocol });
  });
  cdp.on("Network.webSocketWillSendHandshakeRequest", (e) => {
    page.handshakes.push({ id: e.requestId, request: e.request.headers, response: null });
  });
  cdp.on("Network.webSocketHandshakeResponseReceived", (e) => {
    const h = page.handshakes.find((x) => x.id === e.requestId);
    if (h) { h.response = e.response.headers; h.status = e.response.status; }
  });
  await cdp.send("Network.enable");
  return page;
}

const header = (headers, name) => {
  if (!headers) return undefined;
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : headers[key];
};

async function main() {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // playwright-core gives each launch a fresh temporary user-data-dir and deletes it on close.
    // --ignore-certificate-errors: the HTTPS server's certificate is a throwaway self-signed one.
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--ignore-certificate-errors",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    timeout: 30_000,
  });
  console.log(`browser: Chromium ${browser.version()} against ${BASE}`);
  const wsBase = BASE.replace(/^http/, "ws");

  // ---- page 1: echo -------------------------------------------------------------------
  console.log("page 1: echo");
  const p1 = await newPage("page 1");
  const resp = await p1.goto(`${BASE}/`);
  check("GET / answers 200 text/html", resp?.status() === 200 &&
    /^text\/html/.test(resp.headers()["content-type"] || ""),
    `status ${resp?.status()}, content-type ${resp?.headers()["content-type"]}`);
  check("page title is \"wsx serve\"", (await p1.title()) === "wsx serve", await p1.title());
  await expectText(p1, "state", "closed", "#state starts closed");
  const url = await p1.inputValue("#url");
  check("#url defaults to the echo endpoint", url === `${wsBase}/echo`, url);

  await p1.click("#connect");
  await expectText(p1, "state", "open", "#state shows open after Connect");
  const hs = p1.handshakes[0];
  check("handshake answered 101", hs?.status === 101, `status ${hs?.status}`);
  const offered = header(hs?.request, "Sec-WebSocket-Extensions") || "";
  check("Chromium offered permessage-deflate", /permessage-deflate/.test(offered), offered);
  const accepted = header(hs?.response, "Sec-WebSocket-Extensions") || "";
  check("server negotiated permessage-deflate (Sec-WebSocket-Extensions)",
    /^\s*permessage-deflate\b/.test(accepted), `response header "${accepted}"`);
  console.log(`        offered:  ${offered}\n        accepted: ${accepted}`);

  const long = longText(100 * 1024);
  const messages = [
    "hello, wsx",
    "héllo wörld — Ελληνικά, Русский, 日本語, emoji 🎉👍🏽",
    "<b>not bold</b> & \"quotes\" 'too'",
    long,
    "sent with Enter",
    "done ✓",
  ];
  for (const m of messages) await send(p1, "msg", "send", m, { enter: m === "sent with Enter" });
  const outs = (await logLines(p1, "log")).filter((l) => l.cls === "out").map((l) => l.text);
  const outDiff = diff(outs, messages.map((m) => `> ${m}`));
  check(`${messages.length} messages sent (out lines in #log)`, !outDiff, outDiff);
  const ins = (await waitLines(p1, "log", "in", messages.length)).map((l) => l.text);
  const inDiff = diff(ins, messages.map((m) => `< ${m}`));
  check(`${messages.length} echoes in #log, in order and intact (incl. ${Buffer.byteLength(long)}-byte ` +
    "and non-ASCII text)", !inDiff, inDiff);
  check("#msg cleared after sending", (await p1.inputValue("#msg")) === "");

  await p1.screenshot({ path: SCREENSHOT });
  const png = readFileSync(SCREENSHOT);
  check(`screenshot saved (${png.length} bytes)`,
    png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])));

  await p1.click("#disconnect");
  await expectText(p1, "state", "closed", "#state shows closed after Disconnect");
  const last = (await logLines(p1, "log")).at(-1);
  check("page logs a clean close (code 1000/1005)", cleanClose(last), JSON.stringify(last));
  check("Connect enabled, Send disabled again",
    !(await p1.isDisabled("#connect")) && (await p1.isDisabled("#send")));

  // Reconnect through a counting relay: the long message must cross the wire compressed.
  proxy = await startProxy(Number(new URL(BASE).port));
  await p1.fill("#url", `ws://127.0.0.1:${proxy.port}/echo`);
  await p1.click("#connect");
  await expectText(p1, "state", "open", "reconnects (through a byte-counting relay)");
  const inBefore = (await logLines(p1, "log")).filter((l) => l.cls === "in").length;
  const upBefore = proxy.counts.up, downBefore = proxy.counts.down;
  await send(p1, "msg", "send", long);
  const ins2 = await waitLines(p1, "log", "in", inBefore + 1);
  check("long message echoed again", ins2.at(-1)?.text === `< ${long}`, short(ins2.at(-1)?.text));
  await sleep(100);
  const up = proxy.counts.up - upBefore, down = proxy.counts.down - downBefore;
  const size = Buffer.byteLength(long);
  console.log(`        ${size}-byte message: ${up} bytes browser->server, ${down} bytes server->browser`);
  check("browser->server frame was compressed (< 1/2 of the text)", up > 0 && up < size / 2,
    `${up} bytes on the wire`);
  check("server->browser frame was compressed (< 1/2 of the text)", down > 0 && down < size / 2,
    `${down} bytes on the wire`);
  await p1.click("#disconnect");
  await expectText(p1, "state", "closed", "#state closed again");

  // ---- pages 2 and 3: chat ------------------------------------------------------------
  console.log("pages 2 and 3: chat");
  const p2 = await newPage("page 2");
  const p3 = await newPage("page 3");
  await p2.goto(`${BASE}/`);
  await p3.goto(`${BASE}/`);
  await p2.fill("#chat-name", "alice");
  await p3.fill("#chat-name", "bob");
  // bob first, so that he is in the room before alice can speak.
  await p3.click("#chat-join");
  await expectText(p3, "chat-state", "open", "page 3 (bob) joined /chat");
  await p2.click("#chat-join");
  await expectText(p2, "chat-state", "open", "page 2 (alice) joined /chat");
  const chatHs = [...p2.handshakes, ...p3.handshakes];
  check("both chat handshakes negotiated permessage-deflate", chatHs.length === 2 &&
    chatHs.every((h) => /permessage-deflate/.test(header(h.response, "Sec-WebSocket-Extensions") || "")));

  const fromAlice = "hi bob — ça va? 👋";
  await send(p2, "chat-msg", "chat-send", fromAlice);
  const bobIn = await waitLines(p3, "chat-log", "in", 1);
  check("page 3 sees alice's message", diff(bobIn.map((l) => l.text), [`alice: ${fromAlice}`]) === "",
    diff(bobIn.map((l) => l.text), [`alice: ${fromAlice}`]));
  const fromBob = "hi alice, all good";
  await send(p3, "chat-msg", "chat-send", fromBob, { enter: true });
  const aliceIn = await waitLines(p2, "chat-log", "in", 1);
  check("page 2 sees bob's message", aliceIn.at(-1)?.text === `bob: ${fromBob}`,
    JSON.stringify(aliceIn.map((l) => l.text)));
  await sleep(300); // a self-echo, if any, would have arrived by now
  const aliceLog = await logLines(p2, "chat-log");
  const bobLog = await logLines(p3, "chat-log");
  check("page 2 shows its own message once, as sent (no echo back)",
    diff(aliceLog.filter((l) => l.cls !== "sys").map((l) => l.text),
      [`> alice: ${fromAlice}`, `bob: ${fromBob}`]) === "",
    JSON.stringify(aliceLog.map((l) => l.text)));
  check("page 3 shows its own message once, as sent (no echo back)",
    diff(bobLog.filter((l) => l.cls !== "sys").map((l) => l.text),
      [`alice: ${fromAlice}`, `> bob: ${fromBob}`]) === "",
    JSON.stringify(bobLog.map((l) => l.text)));
  const p1Ins = (await logLines(p1, "log")).filter((l) => l.cls === "in").length;
  check("the echo page got nothing from the room", p1Ins === messages.length + 1, `${p1Ins} in lines`);

  for (const [p, who] of [[p2, "page 2"], [p3, "page 3"]]) {
    await p.click("#chat-leave");
    await expectText(p, "chat-state", "closed", `${who} left: #chat-state closed`);
    const l = (await logLines(p, "chat-log")).at(-1);
    check(`${who} logs a clean close (code 1000/1005)`, cleanClose(l), JSON.stringify(l));
  }

  // ---- the server's view --------------------------------------------------------------
  let closes = [];
  for (let i = 0; i < 50; i++) {
    closes = serverCloses();
    if (closes.length >= 4) break;
    await sleep(100);
  }
  const want = [["/echo", 2], ["/chat", 2]];
  check("server logged 4 closes (2 on /echo, 2 on /chat)", closes.length === 4 &&
    want.every(([p, n]) => closes.filter((c) => c.path === p).length === n), JSON.stringify(closes));
  check("server saw every close as clean with code 1000",
    closes.length > 0 && closes.every((c) => c.code === 1000 && c.clean === "true"),
    JSON.stringify(closes));

  // ---- page 4: the page over HTTPS with HTTP/2, its WebSocket a stream of that connection ----
  console.log(`page 4: HTTP/2 (RFC 8441) against ${HTTPS}`);
  const p4 = await newPage("page 4");
  const resp4 = await p4.goto(`${HTTPS}/`);
  check("GET / over HTTPS answers 200", resp4?.status() === 200, `status ${resp4?.status()}`);
  const doc = p4.protocols.find((r) => r.url === `${HTTPS}/`);
  check("the page came over HTTP/2 (ALPN h2)", doc?.protocol === "h2", JSON.stringify(p4.protocols));
  const url4 = await p4.inputValue("#url");
  check("#url defaults to wss:// on the same origin", url4 === `${HTTPS.replace(/^https/, "wss")}/echo`, url4);
  await p4.click("#connect");
  await expectText(p4, "state", "open", "#state shows open after Connect (wss://)");
  const overH2 = "over HTTP/2 — one stream ✓";
  await send(p4, "msg", "send", overH2);
  const ins4 = await waitLines(p4, "log", "in", 1);
  check("echo round-trips over the wss:// socket", ins4.at(-1)?.text === `< ${overH2}`,
    JSON.stringify(ins4.map((l) => l.text)));
  const hs4 = p4.handshakes[0];
  console.log(`        Chromium's handshake: status ${hs4?.status}, ` +
    `extensions "${header(hs4?.response, "Sec-WebSocket-Extensions") || ""}"`);
  check("Chromium's handshake was answered 200 (an extended CONNECT; HTTP/1.1 answers 101)",
    hs4?.status === 200, `status ${hs4?.status}`);
  await p4.click("#disconnect");
  await expectText(p4, "state", "closed", "#state closed after Disconnect (wss://)");
  check("page 4 logs a clean close (code 1000/1005)",
    cleanClose((await logLines(p4, "log")).at(-1)));
  // The server's view: the socket opened as an HTTP/2 stream (an extended CONNECT), not over
  // an HTTP/1.1 connection of its own.
  let opens = [];
  let tlsCloses = [];
  for (let i = 0; i < 50; i++) {
    opens = logOf(TLS_SERVER_LOG).filter((l) => / open /.test(l) && /\bpath=\/echo\b/.test(l));
    tlsCloses = serverCloses(TLS_SERVER_LOG);
    if (opens.length >= 1 && tlsCloses.length >= 1) break;
    await sleep(100);
  }
  check("server opened the wss:// socket over HTTP/2 (log: over=\"h2\")",
    opens.length === 1 && /\bover="h2"/.test(opens[0]), JSON.stringify(opens));
  check("server served the page over HTTP/2 too",
    logOf(TLS_SERVER_LOG).some((l) => / http /.test(l) && /\bpath=\/ /.test(l) && /\bover="h2"/.test(l)));
  check("server saw the HTTP/2 socket's close as clean with code 1000",
    tlsCloses.length === 1 && tlsCloses[0].code === 1000 && tlsCloses[0].clean === "true",
    JSON.stringify(tlsCloses));

  const errors = [p1, p2, p3, p4].flatMap((p) => p.errors);
  check("no JavaScript errors on the pages", errors.length === 0, errors.join("; "));
}

const started = Date.now();
try {
  await main();
} catch (e) {
  failed++;
  console.log(`  FAIL  ${e?.message?.split("\n")[0] ?? e}`);
}
clearTimeout(watchdog);
await Promise.race([browser?.close(), sleep(5000)]).catch(() => {});
proxy?.server.close();
console.log(`browser: took ${((Date.now() - started) / 1000).toFixed(1)} s`);
if (failed > 0) {
  const log = readFileSync(SERVER_LOG, "utf8").trimEnd().split("\n").slice(-30);
  console.log(`== server log (last ${log.length} lines)\n${log.join("\n")}`);
}
summary();
process.exit(failed > 0 ? 1 : 0);
