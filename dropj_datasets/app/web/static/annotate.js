// The participant's flow in the browser: (consent, instructions, practice,) one query at a time, one question at a
// time, each answer timed with the monotonic clock. The server decides every question and stores every response.
"use strict";

const state = { session: null, csrf: null, study: null, query: null, practice: false, seenPractice: false,
                questions: [], answers: [], times: [], start: 0, repeats: 0, played: false, reviewing: false,
                busy: false };
const $ = (id) => document.getElementById(id);
const VIEWS = ["consent", "instructions", "interlude", "query-view", "done", "refused"];

async function call(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    if (state.csrf) options.headers["x-dropj-csrf"] = state.csrf;
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = {};
  try { data = await response.json(); } catch (error) { /* not JSON: said by the status below */ }
  if (!response.ok) {
    const error = new Error(data.error || response.statusText);
    error.status = response.status;
    throw error;
  }
  return data;
}

// One line, large: connecting, saving, saved, server gone, finished (and errors).
function status(kind, text) {
  const line = $("status");
  line.className = `state ${kind}`;
  line.textContent = text;
}

function explain(error) {
  if (error instanceof TypeError) return "The study server cannot be reached (stopped, or the network is down).";
  if (error.status === 404 && /session/.test(error.message)) {
    return "This page has expired (unused too long). Reload it: every saved answer is kept.";
  }
  if (error.status === 409 && /^Too early/.test(error.message)) return error.message;  // the server's lock
  return `Error: ${error.message}`;
}

function show(view) {
  for (const id of VIEWS) $(id).hidden = id !== view;
  window.scrollTo(0, 0);
}

// The finished response, sent again as it is when the reply is lost or the store was busy: the server
// stores one response per (user, query) and answers a repeat with the index it stored.
async function commit(body) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call("POST", "/api/answer", body);
    } catch (error) {
      const transient = error instanceof TypeError || /could not be stored|could not be written/.test(error.message);
      if (!transient || attempt >= 3) throw error;
      status("saving", `Saving (try ${attempt + 2})...`);
      await new Promise((done) => setTimeout(done, 500 * 2 ** attempt));
    }
  }
}

// --- the pages before the queries -------------------------------------------------------------------------------
function showDefinitions(definitions) {
  const box = $("definitions");
  box.replaceChildren();
  for (const item of definitions) {
    const title = document.createElement("h3");
    title.textContent = `"${item.question}"` + (item.note ? ` (${item.note})` : "");
    const list = document.createElement("dl");
    for (const [answer, meaning] of item.answers) {
      const term = document.createElement("dt");
      term.textContent = answer;
      const text = document.createElement("dd");
      text.textContent = meaning;
      list.append(term, text);
    }
    box.append(title, list);
  }
}

function showInstructions() {
  const study = state.study;
  $("instructions-text").textContent = study.instructions;
  showDefinitions(study.definitions);
  $("begin").textContent = study.practice_left ? "Start the practice" : "Start the study";
  status("info", study.practice_left ? "Read the instructions, then start the practice." :
                                       "Read the instructions, then start the study.");
  show("instructions");
}

async function agree() {
  if (state.busy) return;
  state.busy = true;
  try {
    await call("POST", "/api/consent", { session: state.session });
    showInstructions();
  } catch (error) {
    status("error", explain(error));
  } finally {
    state.busy = false;
  }
}

function decline() {
  $("refused-title").textContent = "You did not agree";
  $("refused-text").textContent = "Nothing was recorded. You can close this page.";
  status("finished", "Not taking part.");
  show("refused");
}

// --- one query ---------------------------------------------------------------------------------------------------
function answersEnabled() {
  return !(state.study && state.study.play_through && !state.played);
}

function showQuestion(question) {
  state.reviewing = false;
  $("review").hidden = true;
  $("question").hidden = false;
  $("question").textContent = question.text;
  const box = $("answers");
  box.hidden = false;
  box.replaceChildren();
  question.options.forEach((option, k) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = option;                 // the visible text is exactly the answer string
    button.dataset.key = String(k + 1);          // its key, shown before it (CSS), never part of the text
    button.disabled = !answersEnabled();
    if (option === question.preselected) button.classList.add("preselected");
    button.addEventListener("click", () => answer(question, option));
    box.appendChild(button);
  });
  $("back").disabled = state.answers.length === 0;
}

function showReview() {
  state.reviewing = true;
  $("question").hidden = true;
  $("answers").hidden = true;
  const list = $("review-list");
  list.replaceChildren();
  for (const [question, option] of state.answers) {
    const item = document.createElement("li");
    item.textContent = `${question} ${option}`;
    list.appendChild(item);
  }
  $("review").hidden = false;
  $("back").disabled = false;
  status("info", "Check your answers, then Submit (or Back to change them).");
}

function guide() {
  status("info", answersEnabled() ? "Your turn: answer with a click, or the key shown on the button." :
                                    "Watch both clips to the end.");
}

function onPlayed() {
  if (state.played) return;
  state.played = true;
  $("hint").textContent = "";
  if (!$("status").classList.contains("saved")) guide();
  for (const button of $("answers").querySelectorAll("button")) button.disabled = false;
}

async function loadQuery() {
  const data = await call("GET", `/api/query?session=${state.session}`);
  if (data.done) {
    finished(data);
    return;
  }
  if (state.seenPractice && !data.practice) {   // the practice is over: say so before the study starts
    state.seenPractice = false;
    $("interlude-title").textContent = "Practice finished";
    $("interlude-text").textContent = "From now on your answers are part of the study.";
    $("interlude-go").textContent = "Start the study";
    $("interlude-go").onclick = () => { status("", ""); showQuery(data); };
    status("saved", "Practice done.");
    show("interlude");
    return;
  }
  showQuery(data);
}

function showQuery(data) {
  show("query-view");
  state.seenPractice = state.seenPractice || data.practice;
  state.practice = data.practice;
  state.query = data.query_id;
  state.questions = [data.question];
  state.answers = [];
  state.times = [];
  state.repeats = 0;
  state.played = false;
  $("banner").hidden = !data.practice;
  $("position").textContent = `${data.practice ? "Practice query" : "Query"} ${data.position} of ${data.total}`;
  $("progress").textContent = data.practice ? "practice: not part of the study" :
                                              `${data.answered} of ${data.total} answered`;
  $("confirm-skip").hidden = true;
  $("controls").hidden = false;
  $("hint").textContent = answersEnabled() ? "" : "The answers unlock when both clips have played to the end.";
  if (!$("status").classList.contains("saved")) guide();   // a save's confirmation stays until the next answer
  const clip = $("clip");
  clip.onended = onPlayed;
  clip.src = data.video;
  clip.dataset.query = data.query_id;
  clip.play().catch(() => {});
  showQuestion(data.question);
  state.start = performance.now();   // from the query's load, as the study measured
}

function finished(data) {
  state.query = null;
  const clip = $("clip");
  clip.pause();
  clip.removeAttribute("src");
  clip.load();
  $("question").textContent = "All queries are answered. Thank you!";
  $("answers").replaceChildren();
  $("controls").hidden = true;
  $("progress").textContent = `${data.answered} of ${data.total} answered`;
  $("done-text").textContent = `You have answered all ${data.total} queries; every answer is saved. ` +
                               "You can close this page.";
  $("code").textContent = data.completion_code || "";
  $("code-box").hidden = !data.completion_code;
  status("finished", "Finished: all answers are saved.");
  show("done");
}

// Each answer's seconds run from the previous kept answer (or the query's load) to it, so Back and a new
// answer leave them adding up to the time from the load to the last answer, as the study measured.
function secondsOf() {
  return state.times.map((t, k) => (t - (k ? state.times[k - 1] : state.start)) / 1000);
}

async function answer(question, option) {
  if (state.busy || !answersEnabled() || state.reviewing || question !== state.questions.at(-1)) return;
  state.busy = true;
  state.answers.push([question.text, option]);
  state.times.push(performance.now());
  try {
    const next = await call("POST", "/api/question",
                            { session: state.session, query_id: state.query, answers: state.answers });
    if (!next.done) {
      state.questions.push(next.question);
      showQuestion(next.question);
    } else if (state.study && state.study.review) {
      showReview();
    } else {
      await submit(true);
    }
  } catch (error) {
    state.answers.pop();      // not taken: the same click again sends the same answers, never one more
    state.times.pop();
    status("error", explain(error));
  } finally {
    state.busy = false;
  }
}

function back() {
  if (state.busy || state.answers.length === 0) return;
  state.answers.pop();
  state.times.pop();
  if (state.reviewing) {
    showQuestion(state.questions.at(-1));
  } else {
    state.questions.pop();
    showQuestion(state.questions.at(-1));
  }
  status("info", "Back: answer this question again.");
}

async function submit(held) {
  if (!held) {
    if (state.busy || !state.reviewing) return;
    state.busy = true;
  }
  try {
    status("saving", "Saving...");
    const stored = await commit({
      session: state.session, query_id: state.query, answers: state.answers, seconds: secondsOf(),
      total_time: (state.times.at(-1) - state.start) / 1000, repeat_count: state.repeats });
    status("saved", stored.practice ? "Practice answer checked (not part of the study)." :
                                      `Saved: response ${stored.stored}. Next query.`);
    await loadQuery();
  } catch (error) {
    status("error", explain(error) + (state.reviewing ? " Your answers are still here: Submit again." : ""));
    if (held) throw error;
  } finally {
    if (!held) state.busy = false;
  }
}

function askSkip() {
  if (state.busy || !state.query) return;
  $("confirm-skip").hidden = false;
  $("controls").hidden = true;
}

function cancelSkip() {
  $("confirm-skip").hidden = true;
  $("controls").hidden = false;
}

async function skip() {
  if (state.busy || !state.query || $("confirm-skip").hidden) return;
  state.busy = true;
  try {
    status("saving", "Saving the skip...");
    const stored = await commit({
      session: state.session, query_id: state.query, skip: true,
      total_time: (performance.now() - state.start) / 1000, repeat_count: state.repeats });
    status("saved", stored.practice ? "Practice query skipped (not part of the study)." :
                                      `Saved: response ${stored.stored} (skipped). Next query.`);
    await loadQuery();
  } catch (error) {
    status("error", explain(error));
    cancelSkip();
  } finally {
    state.busy = false;
  }
}

function repeat() {
  if (!state.query) return;
  const clip = $("clip");
  state.repeats += 1;
  clip.currentTime = 0;
  clip.play().catch(() => {});
}

// Keys: 1..9 the answers (as numbered on their buttons), B back, R repeat, S skip (Y / N to confirm),
// Enter submit. A key whose button is hidden or disabled does nothing.
function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey || $("query-view").hidden) return;
  const key = event.key.length === 1 ? event.key.toUpperCase() : event.key;
  let button = null;
  if (!$("confirm-skip").hidden) {
    button = key === "Y" ? $("skip-yes") : key === "N" || key === "Escape" ? $("skip-no") : null;
  } else if (/^[1-9]$/.test(key) && !$("answers").hidden) {
    button = $("answers").querySelectorAll("button")[Number(key) - 1] || null;
  } else if (key === "Enter" && state.reviewing) {
    button = $("submit");
  } else {
    button = { B: $("back"), R: $("repeat"), S: $("skip") }[key] || null;
  }
  if (button && !button.disabled && button.offsetParent !== null) {
    event.preventDefault();
    button.click();
  }
}

async function start() {
  $("repeat").addEventListener("click", repeat);
  $("skip").addEventListener("click", askSkip);
  $("skip-yes").addEventListener("click", skip);
  $("skip-no").addEventListener("click", cancelSkip);
  $("back").addEventListener("click", back);
  $("submit").addEventListener("click", () => submit(false));
  $("agree").addEventListener("click", agree);
  $("decline").addEventListener("click", decline);
  $("begin").addEventListener("click", async () => {
    try { await loadQuery(); } catch (error) { status("error", explain(error)); }
  });
  document.addEventListener("keydown", onKey);
  const params = new URLSearchParams(location.search);
  const body = params.has("user") ? { user: params.get("user").slice(0, 40) } : {};  // the server judges it
  status("connecting", "Connecting to the study server...");
  let session;
  try {
    session = await call("POST", "/api/session", body);
  } catch (error) {
    if (error.status === 403) {
      $("refused-text").textContent = error.message;
      status("error", "This link cannot be used.");
      show("refused");
    } else {
      status("error", explain(error));
    }
    return;
  }
  state.session = session.session;
  state.csrf = session.csrf;
  state.study = session.study || null;
  status("", "");
  try {
    if (!state.study) {                       // the quick path: straight to the queries
      $("title").textContent = `${session.method} feedback, user ${session.user}`;
      await loadQuery();
      return;
    }
    $("title").textContent = `${state.study.title} (participant ${session.user})`;
    document.title = state.study.title;
    if (!state.study.consented) {
      $("consent-text").textContent = state.study.consent;
      status("info", "Please read this first.");
      show("consent");
    } else {
      showInstructions();
    }
  } catch (error) {
    status("error", explain(error));
  }
}

start();
