// The Node `ws` peer: a minimal broadcast chat server of the kind the ws README shows.
//
// Fan-out scenario: each text frame `{"type":"send","text":...}` is stamped with the sender and
// the time, serialised ONCE and the same string is sent to every open client (the sender
// included, as Natter echoes a message to its sender's sockets too). It stores nothing, so it
// is a floor for what a chat server costs rather than an equal: Natter also commits every
// message to SQLite before fanning it out.
//
// Realistic scenario: `{"type":"join","room":R,"name":N}` names the socket and puts it in room R;
// a send with `conv` = a joined room goes to that room's members and into the room's in-memory
// history (the last 50); a send with `to` goes to the named user's sockets and the sender's;
// `{"type":"history","conv":R}` answers with the stored page.
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.env.PORT || 0);
const host = process.env.HOST || '127.0.0.1';
const wss = new WebSocketServer({ host, port, perMessageDeflate: false, clientTracking: true });
const rooms = new Map(); // room name -> Set of sockets
const users = new Map(); // user name -> Set of sockets
const history = new Map(); // room name -> last 50 messages
const HISTORY = 50;
let nextUser = 0;

function addTo(map, key, ws) {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(ws);
}

function sendAll(sockets, out) {
  if (!sockets) return;
  for (const client of sockets) {
    if (client.readyState === WebSocket.OPEN) client.send(out);
  }
}

wss.on('connection', (ws) => {
  ws.name = `u${nextUser++}`;
  ws.rooms = [];
  ws.on('error', () => {});
  ws.on('close', () => {
    for (const r of ws.rooms) rooms.get(r)?.delete(ws);
    users.get(ws.name)?.delete(ws);
  });
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    let frame;
    try {
      frame = JSON.parse(data.toString());
    } catch {
      return;
    }
    if (frame.type === 'join' && typeof frame.room === 'string') {
      if (typeof frame.name === 'string') ws.name = frame.name;
      addTo(users, ws.name, ws);
      addTo(rooms, frame.room, ws);
      ws.rooms.push(frame.room);
      return;
    }
    if (frame.type === 'history') {
      ws.send(JSON.stringify({ type: 'history', messages: history.get(String(frame.conv)) || [] }));
      return;
    }
    if (frame.type !== 'send' || typeof frame.text !== 'string') return;
    const message = { conv: frame.conv ?? null, to: frame.to ?? null, sender: ws.name, text: frame.text, time: Date.now() };
    const out = JSON.stringify({ type: 'message', message });
    if (typeof frame.to === 'string') {
      sendAll(users.get(frame.to), out);
      if (frame.to !== ws.name) sendAll(users.get(ws.name), out);
      return;
    }
    const room = String(frame.conv);
    if (ws.rooms.includes(room)) {
      sendAll(rooms.get(room), out);
      let h = history.get(room);
      if (!h) history.set(room, (h = []));
      h.push(message);
      if (h.length > HISTORY) h.shift();
      return;
    }
    sendAll(wss.clients, out);
  });
});

wss.on('listening', () => {
  // The harness reads this line to learn the port.
  console.log(`LISTENING ${wss.address().port}`);
});
