// dropj record --web: the driver's view streamed as JPEG over a WebSocket; every press and release of the
// study's keys goes back to the server, which steps the environment at 50 steps/s on its own clock.
"use strict";

const KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"]);
const view = document.getElementById("view");
const context = view.getContext("2d");
const line = document.getElementById("line");
const statusLine = document.getElementById("status");
const state = { framesShown: 0, frames: 0, last: null, session: null, sessions: 0, done: false, error: null };
window.dropjRecord = state;  // read by the tests and the benchmark

const params = new URLSearchParams(location.search);
const query = params.get("user") ? "?user=" + encodeURIComponent(params.get("user")) : "";
const RETRIES = 6;  // a lost connection is tried again after 1, 2, 4, 8, 16, 32 s: each time a new session
const held = new Set();
let socket = null;
let retries = 0;
let pending = null;
let drawing = false;

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

async function draw() {
  drawing = true;
  while (pending) {
    const blob = pending;
    pending = null;
    const bitmap = await createImageBitmap(blob);
    context.drawImage(bitmap, 0, 0, view.width, view.height);
    bitmap.close();
    state.framesShown += 1;
  }
  drawing = false;
}

function onMessage(event) {
  if (typeof event.data !== "string") {  // a frame: only the newest is drawn
    state.frames += 1;
    pending = event.data;
    if (!drawing) draw();
    return;
  }
  const message = JSON.parse(event.data);
  if (message.error && !message.done) {
    state.error = message.error;
    statusLine.textContent = message.error;
  } else if (message.done) {
    state.done = true;
    statusLine.textContent = `done: ${message.saved} episodes saved` + (message.error ? ` (${message.error})` : "");
  } else if (message.session) {
    state.session = message;
    state.sessions += 1;
    retries = 0;
    held.clear();  // a new session starts with no key held
    view.focus({ preventScroll: true });  // the keys go to the page; the status line stays in view
    statusLine.textContent = `recording ${message.env} as ${message.user}`;
  } else {
    state.last = message;
    line.textContent = `episode ${message.episode}   step ${message.step}   return ${message.return >= 0 ? "+" : ""}` +
      `${message.return}   saved ${message.saved}`;
  }
}

function connect() {
  socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws" + query);
  socket.binaryType = "blob";
  socket.onmessage = onMessage;
  socket.onclose = () => {
    if (state.done || state.error) return;  // the session ended, or the server refused: nothing to retry
    if (retries >= RETRIES) {
      statusLine.textContent = "disconnected: reload the page to drive again";
      return;
    }
    const wait = 2 ** retries;
    retries += 1;
    statusLine.textContent = `connection lost (the episode being driven is dropped): trying again in ${wait} s`;
    setTimeout(connect, wait * 1000);
  };
}
connect();

addEventListener("keydown", (event) => {
  if (KEYS.has(event.key)) {
    event.preventDefault();
    if (!held.has(event.key)) {  // a held key repeats: only the first press counts
      held.add(event.key);
      send({ key: event.key, down: true });
    }
  } else if (event.key === "Enter") {
    event.preventDefault();
    send({ restart: true });
  } else if (event.key === "Escape") {
    send({ quit: true });
  }
});
addEventListener("keyup", (event) => {
  if (held.delete(event.key)) send({ key: event.key, down: false });
});
addEventListener("blur", () => {  // focus lost: no key counts as held any more, as in the window
  for (const key of held) send({ key, down: false });
  held.clear();
});
