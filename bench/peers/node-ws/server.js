'use strict';
// Node.js peer of ticker's fan-out benchmark (python -m bench fanout): the common way to broadcast with `ws`,
// plus Server-Sent Events on the same HTTP server.
//
//   node server.js --port P
//
// POST /pub   the request body goes to every open WebSocket client (client.send in a loop, one text frame each)
//             and to every SSE client (one `data:` event, built once); answers 200 with how many readers got it.
// GET /sse    an event stream.
// WebSocket   an upgrade on any path is a reader.
// GET /healthz  200 "ok".
const http = require('http');
const { WebSocket, WebSocketServer } = require('ws');

const port = Number(process.argv[process.argv.indexOf('--port') + 1]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node server.js --port P');
  process.exit(2);
}

const sseReaders = new Set();

function publish(body) {
  let readers = 0;
  for (const client of wss.clients) {
    if (client.readyState === WebSocket.OPEN) {
      client.send(body, { binary: false });
      readers += 1;
    }
  }
  if (sseReaders.size > 0) {
    const event = Buffer.concat([Buffer.from('data: '), body, Buffer.from('\n\n')]);
    for (const res of sseReaders) {
      res.write(event);
      readers += 1;
    }
  }
  return readers;
}

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/pub') {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const readers = publish(Buffer.concat(chunks));
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`${readers}\n`);
    });
  } else if (req.method === 'GET' && req.url === '/sse') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(': open\n\n');
    sseReaders.add(res);
    req.on('close', () => sseReaders.delete(res));
  } else if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok\n');
  } else {
    res.writeHead(404);
    res.end();
  }
});

const wss = new WebSocketServer({ server, perMessageDeflate: false });

server.listen(port, '127.0.0.1', 4096, () => console.log(`node-ws listening on 127.0.0.1:${port}`));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
