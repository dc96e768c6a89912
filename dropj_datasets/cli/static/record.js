// dropj record --web: the driver's view streamed as JPEG over a WebSocket; every press and release of the
// study's keys goes back to the server, which steps the environment at 50 steps/s on its own clock.
"use strict";

const KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"]);
const view = document.getElementById("view");
const context = view.getContext("2d");
const line = document.getElementById("line");
const statusLine = document.getElementById("status");
const state = { framesShown: 0, frames: 0, last: null, session: null, done: false, error: null };
window.dropjRecord = state;  // read by the tests and the benchmark

const params = new URLSearchParams(location.search);
const query = params.get("user") ? "?user=" + encodeURIComponent(params.get("user")) : "";
const socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws" + query);
socket.binaryType = "blob";
const held = new Set();
let pending = null;
let drawing = false;

function send(message) {
  if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
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

socket.onmessage = (event) => {
  if (typeof event.data !== "string") {  // a frame: only the newest is drawn
    state.frames += 1;
    pending = event.data;
    if (!drawing) draw();
    return;
  }
  const message = JSON.parse(event.data);
  if (message.error) {
    state.error = message.error;
    statusLine.textContent = message.error;
  } else if (message.done) {
    state.done = true;
    statusLine.textContent = `done: ${message.saved} episodes saved` + (message.error ? ` (${message.error})` : "");
  } else if (message.session) {
    state.session = message;
    view.focus({ preventScroll: true });  // the keys go to the page; the status line stays in view
    statusLine.textContent = `recording ${message.env} as ${message.user}`;
  } else {
    state.last = message;
    line.textContent = `episode ${message.episode}   step ${message.step}   return ${message.return >= 0 ? "+" : ""}` +
      `${message.return}   saved ${message.saved}`;
  }
};
socket.onclose = () => {
  if (!state.done && !state.error) statusLine.textContent = "disconnected: reload the page to drive again";
};

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
