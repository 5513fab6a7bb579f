// Echo server on Node's `ws`; --deflate turns on perMessageDeflate with ws's defaults.
const { WebSocketServer } = require(process.env.WS_MODULE);
const deflate = process.argv.includes('--deflate');
const i = process.argv.indexOf('--listen');
const [host, port] = (i > 0 ? process.argv[i + 1] : '127.0.0.1:0').split(':');
const wss = new WebSocketServer({ host, port: Number(port), perMessageDeflate: deflate,
                                  maxPayload: 64 << 20, backlog: 4096 });
wss.on('listening', () => console.log(`listening on ws://${host}:${wss.address().port}`));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
