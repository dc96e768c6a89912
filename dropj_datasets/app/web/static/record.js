// dropj record --web: the driver's view streamed as JPEG over a WebSocket; every press and release of the
// study's keys goes back to the server, which steps the environment at 50 steps/s on its own clock. Each
// episode waits for the driver's first key; every state but driving is said large, over the view.
"use strict";

const KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"]);
const view = document.getElementById("view");
const context = view.getContext("2d");
const line = document.getElementById("line");
const statusLine = document.getElementById("status");
const overlay = document.getElementById("overlay");
const headline = document.getElementById("headline");
const outcomeLine = document.getElementById("outcome");
const detail = document.getElementById("detail");
const keyList = document.getElementById("keys");
const again = document.getElementById("again");
const state = { framesShown: 0, frames: 0, last: null, session: null, sessions: 0, done: false, error: null,
                phase: "connecting", queue: null, queueSaid: [] };
window.dropjRecord = state;  // read by the tests and the benchmark

const params = new URLSearchParams(location.search);
const query = params.get("user") ? "?user=" + encodeURIComponent(params.get("user")) : "";
const RETRIES = 6;  // a lost connection is tried again after 1, 2, 4, 8, 16, 32 s: each time a new session
const held = new Set();
let socket = null;
let retries = 0;
let pending = null;
let drawing = false;

again.addEventListener("click", () => location.reload());

// One state of the page, said over the view (`phase` "driving" hides it). `outcome`: [text, class] or null.
function show(phase, title, text = "", { outcome = null, keys = false, button = null } = {}) {
  state.phase = phase;
  overlay.dataset.state = phase;
  overlay.classList.toggle("hidden", phase === "driving");
  if (phase === "driving") return;
  headline.textContent = title;
  outcomeLine.textContent = outcome ? outcome[0] : "";
  outcomeLine.className = outcome ? outcome[1] : "";
  detail.textContent = text;
  keyList.hidden = !keys;
  again.hidden = !button;
  if (button) again.textContent = button;
}

function sentence(text) {  // a server's one-line message, as a sentence on the page
  return text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".");
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

// How the last episode ended, as a participant reads it.
function outcomeOf(last) {
  if (!last) return null;
  const driven = `${plural(last.steps, "step")}, return ${last.return}`;
  if (last.outcome === "saved") return [`Episode ${last.episode} saved (${driven}).`, "saved"];
  if (last.outcome === "rescued") {
    return [`Episode ${last.episode} was NOT saved: the recording could not take it, so it is kept in a rescue ` +
            `file. Please tell the experimenter, who adds it with: ${last.repair}`, "rescued"];
  }
  return [`Episode ${last.episode} dropped, not saved (${last.why}).`, "dropped"];
}

function onStatus(message) {
  state.last = message;
  const rescued = message.rescued ? `   kept in rescue files ${message.rescued}` : "";
  line.textContent = `episode ${message.episode}   step ${message.step}   return ${message.return >= 0 ? "+" : ""}` +
    `${message.return}   saved ${message.saved}${rescued}`;
  const outcome = outcomeOf(message.last);
  if (message.phase === "ready") {
    show("ready", "Press an arrow key to start",
         `${message.last ? "The next" : "The"} episode starts with your first key; nothing is recorded before it.`,
         { outcome, keys: true });
  } else if (message.phase === "saving") {
    show("saving", `Saving episode ${message.episode}…`, "The next track comes in a moment.");
  } else if (message.phase === "saved" || message.phase === "rescued") {
    show(message.phase, message.phase === "saved" ? `Episode ${message.episode} saved` :
         `Episode ${message.episode} NOT saved`, "", { outcome });
  } else {
    show("driving");
  }
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
    const said = sentence(message.error);
    if (message.reason === "idle") {
      show("ended", "This session has ended", said, { button: "Drive again" });
    } else if (message.reason === "full") {
      show("error", "The server is full", said, { button: "Try again" });
    } else {
      show("error", "Cannot drive", said, { button: "Reload the page" });
    }
  } else if (message.done) {
    state.done = true;
    const rescued = message.rescued ? `, ${message.rescued} kept in a rescue file` : "";
    statusLine.textContent = `done: ${plural(message.saved, "episode")} saved` + rescued +
      (message.error ? ` (${message.error})` : "");
    show("done", `Done: ${plural(message.saved, "episode")} saved`,
         message.error ? `The session stopped: ${sentence(message.error)}` : "Thank you. You can close this tab now.",
         { outcome: message.rescued ? [`${plural(message.rescued, "episode")} kept in a rescue file: please tell ` +
                                       "the experimenter.", "rescued"] : null });
  } else if (message.queue) {
    state.queue = message;
    statusLine.textContent = message.text;
    if (message.coming) {   // only a session that is ending holds this participant's place
      show("queued", "A place is coming free",
           "A participant is finishing their session. Your turn starts in a moment: keep this page open.");
    } else {
      show("queued", "The server is full",
           `You are number ${message.queue} in the queue (${plural(message.driving, "participant")} driving). ` +
           "Your turn starts by itself: keep this page open.");
    }
    state.queueSaid = state.queueSaid.slice(-9).concat([`${headline.textContent}\n${detail.textContent}`]);  // tests
  } else if (message.session) {
    state.session = message;
    state.queue = null;
    state.sessions += 1;
    retries = 0;
    held.clear();  // a new session starts with no key held
    view.focus({ preventScroll: true });  // the keys go to the page; the status line stays in view
    statusLine.textContent = `recording ${message.env} as ${message.user}`;
    show("connected", "Getting the track ready…");
  } else {
    onStatus(message);
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
      show("gone", "The server is gone", "Reload the page to drive again once it is back.",
           { button: "Reload the page" });
      return;
    }
    const wait = 2 ** retries;
    retries += 1;
    statusLine.textContent = `connection lost (the episode being driven is dropped): trying again in ${wait} s`;
    show("lost", "Connection lost", `The episode being driven is dropped. Trying again in ${wait} s…`);
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
    if (event.target === again) return;  // the button's own Enter
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

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}
