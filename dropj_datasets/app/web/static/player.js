// The episode player: each step's frame (a PNG per step, the next ones loaded ahead), its action, reward and flags,
// played at a speed times the recorded pace, stepped with buttons or keys. While a frame loads the last one stays,
// dimmed, under "loading" (or "decoding frames" with --vae); a frame that fails, or a server gone, is said so.
// `#player`'s data-state is "loading", "playing", "paused", "ended" or "error"; `#overlay`'s data-step the step.
"use strict";

const $ = (id) => document.getElementById(id);
const player = $("player");
const frame = $("frame");
const overlay = $("overlay");
const scrub = $("scrub");
const playButton = $("play");
const speed = $("speed");
const statusText = $("status-text");

const IN_FLIGHT = 4;  // frame requests at once
const KEPT = 600;  // frames kept loaded, the farthest from the step shown dropped first
const AHEAD_S = 2;  // seconds of playback loaded ahead

let episode = null;
let last = 0;  // the last step's index
let current = 0;  // the step shown: its text at once, its frame once loaded
let playing = false;
let clock = 0;  // playback position in steps (fractional)
let tick = 0;  // the previous animation frame's time
let failure = null;  // what went wrong, said until the next step asked for
const frames = new Map();  // step -> {image, loaded}
let inFlight = 0;

const pace = () => episode.fps * Number(speed.value);
const steps = (n) => Number(n.toFixed(1)).toString();
const signed = (x) => (x > 0 ? "+" : "") + Number(x.toPrecision(6)).toString();  // as `dropj show`: +10, -1, 0

function setState(state) {
  player.dataset.state = state;
  playButton.textContent = playing ? "\u275a\u275a Pause" : "\u25b6 Play";
  if (state === "loading") {
    statusText.textContent = episode && episode.decoded
      ? "decoding frames with the VAE\u2026 (the first takes a few seconds)" : `loading step ${current}\u2026`;
  }
}

function request(t) {
  let entry = frames.get(t);
  if (entry) return entry;
  entry = {image: new Image(), loaded: false};
  frames.set(t, entry);
  inFlight++;
  entry.image.onload = () => {
    inFlight--;
    entry.loaded = true;
    if (t === current) display();
    preload();
  };
  entry.image.onerror = () => {
    inFlight--;
    frames.delete(t);  // asked for again when next shown
    if (t === current) explain(t);
  };
  entry.image.src = `${player.dataset.frames}${t}.png`;
  return entry;
}

function preload() {
  const ahead = Math.min(Math.max(Math.ceil(pace() * AHEAD_S), 8), 400);
  for (let t = current + 1; t <= Math.min(current + ahead, last) && inFlight < IN_FLIGHT; t++) request(t);
  if (frames.size > KEPT) {
    const far = [...frames.keys()].filter((t) => frames.get(t).loaded)
      .sort((a, b) => Math.abs(b - current) - Math.abs(a - current));
    for (const t of far.slice(0, frames.size - KEPT)) frames.delete(t);
  }
}

function display() {  // the current step's frame, loaded
  frame.src = frames.get(current).image.src;
  frame.dataset.step = String(current);
  if (!failure) setState(playing ? "playing" : current === last ? "ended" : "paused");
}

async function explain(t) {  // a frame failed: ask again to learn why
  let why;
  try {
    const response = await fetch(`${player.dataset.frames}${t}.png`);
    const body = await response.json().catch(() => ({}));
    why = response.ok ? `The frame of step ${t} could not be shown.`
      : `The frame of step ${t} could not be loaded: ${body.error || response.statusText} (HTTP ${response.status}).`;
  } catch (error) {
    why = "The server is not answering: is dropj serve still running? Reload this page once it is.";
  }
  if (t === current) fail(why);
}

function fail(message) {
  failure = message;
  playing = false;
  statusText.textContent = message;
  setState("error");
}

function row(key, value, className) {
  const line = document.createElement("div");
  line.className = "row";
  const k = document.createElement("span");
  k.className = "k";
  k.textContent = key;
  const v = document.createElement("span");
  v.className = className;
  v.textContent = value;
  line.append(k, " ", v);
  return line;
}

function describe(t) {
  const padding = episode.padding_last && t === last;
  const head = document.createElement("div");
  head.id = "step";
  head.textContent = `step ${t} of ${last}`;
  const rows = [head];
  if (padding) {
    rows.push(row("action", "none: padding step", "none"), row("reward", "none: padding step", "none"));
  } else {
    const [steer, gas, brake] = episode.actions[t];
    rows.push(row("action", `steer ${steer < 0 ? "" : "+"}${steer.toFixed(2)}  gas ${gas.toFixed(2)}  brake ${brake.toFixed(2)}`, "v"),
              row("reward", signed(episode.rewards[t]), "v"));
  }
  const flags = episode.flags[t];
  rows.push(row("flags", flags.length ? flags.join(" ") : "none", flags.length ? "flags" : "none"));
  overlay.replaceChildren(...rows);
  overlay.dataset.step = String(t);
  player.classList.toggle("padding", padding);
  $("back").disabled = t === 0;
  $("forward").disabled = t === last;
  $("padding").hidden = !padding;
}

function show(t) {
  current = Math.min(Math.max(t, 0), last);
  failure = null;
  scrub.value = current;
  describe(current);
  if (request(current).loaded) display(); else setState("loading");
  preload();
}

function play() {
  if (current === last) show(0);
  playing = true;
  clock = current;
  tick = performance.now();
  setState(frames.get(current) && frames.get(current).loaded ? "playing" : "loading");
  requestAnimationFrame(advance);
}

function pause() {
  playing = false;
  setState(failure ? "error" : !frames.get(current) || !frames.get(current).loaded ? "loading"
    : current === last ? "ended" : "paused");
}

function advance(now) {  // time runs only while the step's frame is on screen: a slow frame holds the clock
  if (!playing) return;
  const dt = Math.min((now - tick) / 1000, 0.25);
  tick = now;
  const entry = frames.get(current);
  if (entry && entry.loaded) {
    if (current === last) { pause(); return; }
    clock += dt * pace();
    const target = Math.min(Math.floor(clock), last);
    if (target !== current) show(target);
  }
  requestAnimationFrame(advance);
}

const toggle = () => (playing ? pause() : play());
const step = (by) => { if (playing) pause(); show(current + by); };
const jump = (t) => { show(t); clock = current; };

function setPace() {
  $("pace").textContent = `${steps(pace())} steps/s` + (speed.value === "1" ? " (as recorded)" : "");
}

async function start() {
  let response;
  try {
    response = await fetch(player.dataset.source);
  } catch (error) {
    fail("The server is not answering: is dropj serve still running? Reload this page once it is.");
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    fail(`The episode could not be loaded: ${body.error || response.statusText} (HTTP ${response.status}).`);
    return;
  }
  episode = body;
  last = episode.steps - 1;
  scrub.max = last;
  for (const option of speed.options) option.textContent = `${option.value}x (${steps(episode.fps * option.value)}/s)`;
  if (episode.scale !== null) {
    $("legend-min").textContent = `-${Number(episode.scale.toPrecision(3))}`;
    $("legend-max").textContent = `+${Number(episode.scale.toPrecision(3))}`;
    $("legend").hidden = false;
  }
  scrub.addEventListener("input", () => { show(Number(scrub.value)); clock = current; });
  playButton.addEventListener("click", toggle);
  $("back").addEventListener("click", () => step(-1));
  $("forward").addEventListener("click", () => step(1));
  speed.addEventListener("change", () => { setPace(); preload(); speed.blur(); });
  const keys = {" ": toggle, ArrowLeft: () => step(-1), ArrowRight: () => step(1), Home: () => jump(0),
                End: () => jump(last)};
  document.addEventListener("keydown", (event) => {
    const act = keys[event.key];
    if (!act || event.altKey || event.ctrlKey || event.metaKey || event.target === speed) return;
    event.preventDefault();  // not the page's scroll, nor a focused button's click or the scrubber's own step
    if (!event.repeat || event.key !== " ") act();
  });
  document.addEventListener("keyup", (event) => { if (event.key === " ") event.preventDefault(); });
  setPace();
  show(0);
}

start();
