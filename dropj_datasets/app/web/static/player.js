// The episode player: frames at the recorded pace, a step scrubber, and each step's action, reward and flags.
"use strict";

const player = document.getElementById("player");
const frame = document.getElementById("frame");
const overlay = document.getElementById("overlay");
const scrub = document.getElementById("scrub");
const playButton = document.getElementById("play");
const stepLabel = document.getElementById("step");
let episode = null;
let timer = null;

function show(t) {
  frame.src = `${player.dataset.frames}${t}.png`;
  scrub.value = t;
  stepLabel.textContent = `step ${t} of ${episode.steps - 1}`;
  const [steer, gas, brake] = episode.actions[t];
  const flags = episode.flags[t].join(" ");
  overlay.textContent = `steer ${steer.toFixed(2)}  gas ${gas.toFixed(2)}  brake ${brake.toFixed(2)}\n` +
                        `reward ${episode.rewards[t]}${flags ? "  " + flags : ""}`;
  overlay.dataset.step = String(t);
}

function toggle() {
  if (timer) {
    clearInterval(timer);
    timer = null;
    playButton.textContent = "Play";
    return;
  }
  playButton.textContent = "Pause";
  timer = setInterval(() => {
    const next = Number(scrub.value) + 1;
    if (next >= episode.steps) { toggle(); return; }
    show(next);
  }, 1000 / episode.fps);
}

async function start() {
  const response = await fetch(player.dataset.source);
  episode = await response.json();
  scrub.max = episode.steps - 1;
  scrub.addEventListener("input", () => show(Number(scrub.value)));
  playButton.addEventListener("click", toggle);
  show(0);
}

start();
