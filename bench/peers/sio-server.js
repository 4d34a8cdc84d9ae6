// The socket.io peer: the socket.io chat example, reduced to its message path.
//
// Fan-out scenario: a client emits `chat` with `{text}`; the server stamps sender and time and
// `io.emit`s it to every connected socket (the sender included). socket.io encodes a broadcast
// packet once for all recipients. It stores nothing (see ws-server.js for why that is a floor).
//
// Realistic scenario: `join` `{room, name}` names the socket, joins socket.io room `room` and the
// per-user room `user:name`; `chat` with `conv` = a joined room goes `io.to(room)` and into the
// room's in-memory history (last 50); `chat` with `to` goes to `user:to` and the sender's
// `user:` room; `history` answers with the stored page.
//
// The load generator speaks Engine.IO v4 over WebSocket directly (no HTTP long-polling first),
// which is what a socket.io client with `transports: ["websocket"]` does.
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const port = Number(process.env.PORT || 0);
const host = process.env.HOST || '127.0.0.1';
const server = http.createServer();
const io = new Server(server, {
  transports: ['websocket'],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
});
const history = new Map();
const HISTORY = 50;
let nextUser = 0;

io.on('connection', (socket) => {
  socket.data.name = `u${nextUser++}`;
  socket.on('join', (j) => {
    if (!j || typeof j.room !== 'string') return;
    if (typeof j.name === 'string') socket.data.name = j.name;
    socket.join(j.room);
    socket.join(`user:${socket.data.name}`);
  });
  socket.on('history', (room) => {
    socket.emit('history', history.get(String(room)) || []);
  });
  socket.on('chat', (msg) => {
    if (!msg || typeof msg.text !== 'string') return;
    const name = socket.data.name;
    const message = { conv: msg.conv ?? null, to: msg.to ?? null, sender: name, text: msg.text, time: Date.now() };
    if (typeof msg.to === 'string') {
      io.to(`user:${msg.to}`).to(`user:${name}`).emit('chat', message);
      return;
    }
    const room = String(msg.conv);
    if (socket.rooms.has(room)) {
      io.to(room).emit('chat', message);
      let h = history.get(room);
      if (!h) history.set(room, (h = []));
      h.push(message);
      if (h.length > HISTORY) h.shift();
      return;
    }
    io.emit('chat', message);
  });
});

server.listen(port, host, () => {
  console.log(`LISTENING ${server.address().port}`);
});
