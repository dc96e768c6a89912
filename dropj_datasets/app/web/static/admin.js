// The experimenter's dashboard: polls /api/admin/figures (dropj.loaders.agreement.figures) every few seconds.
// Everything is inserted as text (textContent), never as HTML: answers and titles come from the study.
"use strict";

const POLL_MS = 3000;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function cell(row, text, cls) { const td = el("td", text, cls); row.appendChild(td); return td; }

function num(value, digits) { return value === null || value === undefined ? "-" : Number(value).toFixed(digits); }

// A time cell: the local date and time, the exact instant in <time datetime> (and its tooltip).
function whenCell(row, epoch) {
  if (epoch === null || epoch === undefined) return cell(row, "-");
  const d = new Date(epoch * 1000);
  const time = el("time", d.toLocaleDateString(undefined, {month: "short", day: "numeric"}) + " " +
                          d.toLocaleTimeString(undefined, {hour: "2-digit", minute: "2-digit", second: "2-digit"}));
  time.dateTime = d.toISOString();
  time.title = d.toString();
  const td = cell(row, "");
  td.appendChild(time);
  return td;
}

function counts(byAnswer) {
  const list = el("ul", null, "counts");
  for (const [answer, n] of Object.entries(byAnswer)) {
    const item = el("li");
    item.appendChild(el("b", answer + ": "));
    item.appendChild(document.createTextNode(String(n)));
    list.appendChild(item);
  }
  return list;
}

function participants(data) {
  const body = document.querySelector("#participants tbody");
  body.replaceChildren();
  for (const p of data.participants) {
    const row = el("tr");
    row.dataset.user = p.user;
    cell(row, "user " + p.user);
    const progress = cell(row, "", "progress");
    const done = p.responses;
    if (p.of) {
      const bar = el("progress");
      bar.max = p.of; bar.value = Math.min(done, p.of);
      progress.appendChild(bar);
    }
    progress.appendChild(document.createTextNode(p.of ? `${done} of ${p.of}` : `${done}`));
    cell(row, p.answered, "num");
    cell(row, p.skipped, "num");
    cell(row, p.repeats, "num");
    cell(row, p.seconds_median === null ? "-" : `${num(p.seconds_median, 1)} (${num(p.seconds_mean, 1)})`, "num");
    cell(row, num(p.answer_seconds_mean, 1), "num");
    whenCell(row, p.consented_at);
    whenCell(row, p.completed_at);
    const answers = cell(row, "", "answers");
    for (const [question, byAnswer] of Object.entries(p.answers)) {
      const line = el("div", question + " ");
      line.appendChild(counts(byAnswer));
      answers.appendChild(line);
    }
    body.appendChild(row);
  }
  if (!data.participants.length) {
    const row = el("tr");
    cell(row, "Nobody has consented or answered yet.").colSpan = 10;
    body.appendChild(row);
  }
  const left = document.getElementById("left-off");
  left.hidden = !data.participants_left_off;
  left.textContent = `${data.participants_left_off} more participants are not listed (the first ` +
                     `${data.participants.length} by id are).`;
}

function questions(data) {
  const body = document.querySelector("#questions tbody");
  body.replaceChildren();
  for (const q of data.questions) {
    const row = el("tr");
    cell(row, q.question);
    cell(row, "").appendChild(counts(q.distribution));
    cell(row, q.shared_queries, "num");
    cell(row, q.raters, "num");
    cell(row, q.statistic || "-");
    if (q.kappa === null) cell(row, "undefined: " + q.undefined, "undefined");
    else cell(row, num(q.kappa, 3), "num kappa");
    cell(row, q.observed === null ? "-" : `${num(q.observed, 3)} / ${num(q.expected, 3)}`, "num");
    body.appendChild(row);
  }
}

function render(data) {
  document.getElementById("title").textContent = data.title ? `Dashboard: ${data.title}` : "Experimenter's dashboard";
  document.title = (data.title || "dropj annotate") + ": dashboard";
  const started = data.participants.filter(p => p.responses > 0).length;
  const finished = data.participants.filter(p => p.of && p.responses >= p.of).length;
  document.getElementById("summary").textContent =
    `${data.responses} responses from ${data.participants_total} participants (${started} started, ${finished} ` +
    `finished); method ${data.method}, ${data.queries} queries per participant.`;
  document.getElementById("where").textContent = `Responses are read from ${data.directory}.`;
  participants(data);
  questions(data);
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const reply = await fetch("/api/admin/figures", {cache: "no-store", credentials: "same-origin"});
    const data = await reply.json();
    if (!reply.ok) throw new Error(data.error || `HTTP ${reply.status}`);
    render(data);
    status.className = "state live";
    status.textContent = "Live: updated " + new Date(data.now * 1000).toLocaleTimeString();
  } catch (error) {
    status.className = "state error";
    status.textContent = "Not updated: " + error.message + " (retrying)";
  }
  setTimeout(poll, POLL_MS);
}

poll();
