// The study's flow in the browser: one question at a time, each answer timed with the monotonic clock.
"use strict";

const state = { session: null, csrf: null, query: null, answers: [], seconds: [], start: 0, last: 0,
                repeats: 0, busy: false };
const $ = (id) => document.getElementById(id);

async function call(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    if (state.csrf) options.headers["x-dropj-csrf"] = state.csrf;
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function status(text) { $("status").textContent = text; }

// The finished response, sent again as it is when the reply is lost or the store was busy: the server
// stores one response per (user, query) and answers a repeat with the index it stored.
async function commit(body) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call("POST", "/api/answer", body);
    } catch (error) {
      const transient = error instanceof TypeError || /could not be stored/.test(error.message);
      if (!transient || attempt >= 3) throw error;
      status(`saving (try ${attempt + 2})...`);
      await new Promise((done) => setTimeout(done, 500 * 2 ** attempt));
    }
  }
}

function showQuestion(question) {
  $("question").textContent = question.text;
  const box = $("answers");
  box.replaceChildren();
  for (const option of question.options) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = option;                 // the visible text is exactly the answer string
    if (option === question.preselected) button.classList.add("preselected");
    button.addEventListener("click", () => answer(question.text, option));
    box.appendChild(button);
  }
}

async function loadQuery() {
  const data = await call("GET", `/api/query?session=${state.session}`);
  $("progress").textContent = `${data.answered} of ${data.total} answered`;
  if (data.done) {
    $("question").textContent = "All queries are answered. Thank you!";
    $("answers").replaceChildren();
    $("controls").hidden = true;
    $("clip").removeAttribute("src");
    return;
  }
  state.query = data.query_id;
  state.answers = [];
  state.seconds = [];
  state.repeats = 0;
  const clip = $("clip");
  clip.src = data.video;
  clip.dataset.query = data.query_id;
  clip.play().catch(() => {});
  showQuestion(data.question);
  state.start = state.last = performance.now();   // from the query's load, as the study measured
  status("");
}

async function answer(question, option) {
  if (state.busy) return;
  state.busy = true;
  try {
    const now = performance.now();
    state.answers.push([question, option]);
    state.seconds.push((now - state.last) / 1000);
    state.last = now;
    const next = await call("POST", "/api/question",
                            { session: state.session, query_id: state.query, answers: state.answers });
    if (!next.done) {
      showQuestion(next.question);
      return;
    }
    const stored = await commit({
      session: state.session, query_id: state.query, answers: state.answers, seconds: state.seconds,
      total_time: (now - state.start) / 1000, repeat_count: state.repeats });
    status(`stored response ${stored.stored}`);
    await loadQuery();
  } catch (error) {
    state.answers.pop();      // not taken: the same click again sends the same answers, never one more
    state.seconds.pop();
    status(`error: ${error.message}`);
  } finally {
    state.busy = false;
  }
}

async function skip() {
  if (state.busy || !state.query) return;
  state.busy = true;
  try {
    const stored = await commit({
      session: state.session, query_id: state.query, skip: true,
      total_time: (performance.now() - state.start) / 1000, repeat_count: state.repeats });
    status(`stored response ${stored.stored} (skipped)`);
    await loadQuery();
  } catch (error) {
    status(`error: ${error.message}`);
  } finally {
    state.busy = false;
  }
}

function repeat() {
  const clip = $("clip");
  state.repeats += 1;
  clip.currentTime = 0;
  clip.play().catch(() => {});
}

async function start() {
  $("repeat").addEventListener("click", repeat);
  $("skip").addEventListener("click", skip);
  const params = new URLSearchParams(location.search);
  const body = params.has("user") ? { user: Number(params.get("user")) } : {};
  try {
    const session = await call("POST", "/api/session", body);
    state.session = session.session;
    state.csrf = session.csrf;
    $("title").textContent = `${session.method} feedback, user ${session.user}`;
    await loadQuery();
  } catch (error) {
    status(`error: ${error.message}`);
  }
}

start();
