// paper-assistant web chat. Plain JS, no build step, talks only to the server that served it.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "paper-assistant-token";
const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  messages: [],          // the conversation sent with every question (OpenAI messages)
  papers: new Map(),     // paper_id -> paper JSON (abstract included), fetched on demand
  busy: false,
  opener: null,          // the button that opened the paper panel (focus returns there)
  model: "paper-assistant",  // the collection answers come from, as its OpenAI model id (/v1/models)
  collection: null,      // its collection name (null: the one the server serves by default)
};

// A header value carries bytes 0-255 only: send the token's UTF-8 bytes (the server compares bytes).
function utf8Bytes(text) {
  return Array.from(new TextEncoder().encode(text), (b) => String.fromCharCode(b)).join("");
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.token) h["Authorization"] = "Bearer " + utf8Bytes(state.token);
  return h;
}

// Only http: and https: addresses become links (anchored: "javascript:...//arxiv.org/abs/1" is not one).
const HTTP_URL = /^https?:\/\/[^\s\/?#]+[^\s]*$/i;
const ARXIV_URL = /^https:\/\/arxiv\.org\/abs\/([A-Za-z0-9.\/-]+)$/;

async function errorText(resp) {
  try {
    const body = await resp.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (e) { /* not JSON */ }
  return resp.status + " " + resp.statusText;
}

// -- start-up and the token page ------------------------------------------------------
async function connect() {
  let resp;
  try {
    resp = await fetch("/healthz", { headers: headers() });
  } catch (e) {
    $("status").textContent = "cannot reach the server";
    return;
  }
  if (resp.status === 401) {
    showTokenView(state.token ? "That token was not accepted." : "");
    return;
  }
  if (!resp.ok) {
    $("status").textContent = await errorText(resp);
    return;
  }
  const h = await resp.json();
  $("status").textContent = `${h.papers} papers · answers: ${h.llm}` + (h.token_required ? " · token accepted" : "");
  $("token-view").hidden = true;
  $("chat-view").hidden = false;
  $("question").focus();
  loadCollections();
}

// -- the collection picker: one OpenAI model per collection ------------------------------
async function loadCollections() {
  let body;
  try {
    const resp = await fetch("/v1/models", { headers: headers() });
    if (!resp.ok) return;
    body = await resp.json();
  } catch (e) {
    return;
  }
  const sel = $("collection");
  sel.textContent = "";
  for (const m of body.data || []) {
    const opt = el("option", null, m.collection || m.id);
    opt.value = m.id;
    opt.dataset.collection = m.collection || "";
    sel.appendChild(opt);
  }
  sel.value = state.model;
  if (sel.selectedIndex < 0 && sel.options.length) sel.selectedIndex = 0;
}

$("collection").addEventListener("change", () => {
  const opt = $("collection").selectedOptions[0];
  state.model = opt ? opt.value : "paper-assistant";
  state.collection = opt && opt.dataset.collection ? opt.dataset.collection : null;
  state.papers.clear();
  $("reset").click();  // another collection's papers: a new conversation
});

function showTokenView(message) {
  $("chat-view").hidden = true;
  $("token-view").hidden = false;
  $("status").textContent = "access token required";
  $("token-error").textContent = message;
  $("token-input").focus();
}

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.token = $("token-input").value.trim();
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $("token-input").value = "";
  connect();
});

// -- rendering ---------------------------------------------------------------------------
function el(tag, cls, text) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (text !== undefined) n.textContent = text;
  return n;
}

function addTurn(role, text) {
  $("empty").hidden = true;
  const li = el("li", "turn " + role);
  if (text !== undefined) li.textContent = text;
  $("log").appendChild(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

// Answer text with each [n] as a button opening the cited paper.
function renderAnswerText(container, text, citations) {
  const byMarker = new Map(citations.map((c) => [c.marker, c]));
  const re = /\[(\d+)\]/g;
  let last = 0;
  let m;
  while ((m = re.exec(text)) !== null) {
    container.appendChild(document.createTextNode(text.slice(last, m.index)));
    const cite = byMarker.get(Number(m[1]));
    if (cite) {
      const b = el("button", "marker", `[${m[1]}]`);
      b.type = "button";
      b.dataset.marker = m[1];
      b.setAttribute("aria-pressed", "false");
      b.setAttribute("aria-label", `Source ${m[1]}: ${cite.title}`);
      b.addEventListener("click", () => openPaper(cite.paper_id, cite, b));
      container.appendChild(b);
    } else {
      container.appendChild(document.createTextNode(m[0]));
    }
    last = re.lastIndex;
  }
  container.appendChild(document.createTextNode(text.slice(last)));
}

// The chat-completions content is Markdown with the papers' text escaped (a "\<" shows as "<");
// this page shows it as plain text while it streams.
function unescapeMarkdown(text) {
  return text.replace(/\\([\\`*_\[\]<>!|#~&(:])/g, "$1");
}

function renderAnswer(li, answer, citations) {
  li.classList.remove("streaming");
  li.textContent = "";
  if (answer.refused) {
    li.classList.add("refusal");
    li.appendChild(el("div", "badge", "No answer in the indexed papers"));
  }
  const text = el("div", "text");
  renderAnswerText(text, answer.answer, citations);
  li.appendChild(text);
  if (citations.length) {
    const list = el("ol", "cites");
    list.setAttribute("aria-label", "References");
    for (const c of citations) {
      const item = el("li");
      const b = el("button", "marker", `[${c.marker}]`);
      b.type = "button";
      b.setAttribute("aria-pressed", "false");
      b.addEventListener("click", () => openPaper(c.paper_id, c, b));
      item.appendChild(b);
      item.appendChild(document.createTextNode(" "));
      item.appendChild(el("bdi", "", c.title));  // isolated: its text cannot turn the date around
      if (c.date) item.appendChild(document.createTextNode(` (${c.date})`));
      list.appendChild(item);
    }
    li.appendChild(list);
    li.appendChild(copyBibtexControl(citations));
  }
  if (answer.sources && answer.sources.length) {
    const det = el("details", "sources");
    det.appendChild(el("summary", "", `Sources searched (${answer.sources.length})`));
    const ol = el("ol");
    for (const s of answer.sources) {
      const item = el("li");
      const b = el("button", "", s.title);
      b.type = "button";
      b.addEventListener("click", () => openPaper(s.paper_id, null, b));
      item.appendChild(b);
      ol.appendChild(item);
    }
    det.appendChild(ol);
    li.appendChild(det);
  }
}

// -- references out: one click copies the cited papers' BibTeX ---------------------------
function copyBibtexControl(citations) {
  const row = el("div", "copy-row");
  const b = el("button", "secondary copy-bibtex", "Copy BibTeX");
  b.type = "button";
  const note = el("span", "copy-note");
  note.setAttribute("role", "status");
  const ids = [...new Set(citations.map((c) => c.paper_id))];
  b.addEventListener("click", async () => {
    note.textContent = "";
    try {
      let q = ids.map((id) => "ids=" + encodeURIComponent(id)).join("&");
      if (state.collection) q += "&collection=" + encodeURIComponent(state.collection);
      const resp = await fetch("/v1/references?format=bibtex&" + q, { headers: headers() });
      if (!resp.ok) throw new Error(await errorText(resp));
      const text = await resp.text();
      await copyText(text);
      note.textContent = `Copied ${ids.length} BibTeX ${ids.length === 1 ? "entry" : "entries"}`;
    } catch (e) {
      note.textContent = "Could not copy: " + e.message;
    }
  });
  row.appendChild(b);
  row.appendChild(note);
  return row;
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return;
    } catch (e) { /* denied: fall back below */ }
  }
  const area = el("textarea", "visually-hidden");
  area.value = text;
  document.body.appendChild(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error("the browser refused to copy");
}

function renderError(li, message) {
  li.classList.remove("streaming");
  li.classList.add("error");
  li.textContent = "";
  li.appendChild(el("div", "badge", "Error"));
  li.appendChild(el("div", "text", message));
}

// -- the paper panel ---------------------------------------------------------------------
async function fetchPaper(id) {
  if (state.papers.has(id)) return state.papers.get(id);
  const query = state.collection ? "?collection=" + encodeURIComponent(state.collection) : "";
  // Every character of the id encoded, "/" too: "x/../y" must not become the path of paper "y".
  const resp = await fetch("/v1/papers/" + encodeURIComponent(id) + query,
                           { headers: headers() });
  if (!resp.ok) throw new Error(await errorText(resp));
  const paper = await resp.json();
  state.papers.set(id, paper);
  return paper;
}

async function openPaper(id, cite, opener) {
  document.querySelectorAll(".marker[aria-pressed='true']").forEach((b) => b.setAttribute("aria-pressed", "false"));
  if (cite) opener.setAttribute("aria-pressed", "true");
  state.opener = opener;
  const panel = $("cite-panel");
  let paper;
  try {
    paper = await fetchPaper(id);
  } catch (e) {
    panel.hidden = false;
    $("cite-title").textContent = "Could not load the paper";
    $("cite-abstract").textContent = e.message;
    return;
  }
  $("cite-label").textContent = cite ? (cite.label || `Source [${cite.marker}]`) : "Retrieved paper";
  $("cite-title").textContent = paper.title;
  $("cite-date").textContent = paper.date || "no date";
  const idBox = $("cite-id");
  idBox.textContent = "";
  const url = typeof paper.url === "string" ? paper.url.trim() : "";
  if (HTTP_URL.test(url)) {
    const arxiv = ARXIV_URL.exec(url);
    const a = el("a", "", arxiv ? "arXiv:" + arxiv[1] : paper.paper_id);
    a.href = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    idBox.appendChild(a);
  } else {
    idBox.textContent = paper.paper_id;
  }
  const abs = $("cite-abstract");
  abs.textContent = "";
  const quote = cite && cite.quote;
  const at = quote ? paper.abstract.indexOf(quote) : -1;
  if (at >= 0) {
    $("cite-quote-note").textContent = cite.note || "The highlighted sentence supports the cited claim.";
    abs.appendChild(document.createTextNode(paper.abstract.slice(0, at)));
    const mark = el("mark", "", quote);
    mark.id = "cite-quote";
    abs.appendChild(mark);
    abs.appendChild(document.createTextNode(paper.abstract.slice(at + quote.length)));
  } else {
    $("cite-quote-note").textContent = cite ? "No single supporting sentence was found." : "";
    abs.textContent = paper.abstract;
  }
  panel.hidden = false;
  $("cite-title").focus();
  const mark = $("cite-quote");
  if (mark) mark.scrollIntoView({ block: "nearest" });
}

function closePaper() {
  $("cite-panel").hidden = true;
  document.querySelectorAll(".marker[aria-pressed='true']").forEach((b) => b.setAttribute("aria-pressed", "false"));
  if (state.opener) state.opener.focus();
}

$("cite-close").addEventListener("click", closePaper);
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && !$("cite-panel").hidden) closePaper();
});

// -- asking and verifying: one POST with the filters, one way to handle a refused token -----
// POSTs `body` with the date filters added; returns the response, or null when it is not usable (401: the
// token view is shown and `li` removed; another error: its message is shown in `li`).
async function post(path, body, li) {
  const since = $("since").value.trim();
  const until = $("until").value.trim();
  if (since) body.since = since;
  if (until) body.until = until;
  const resp = await fetch(path, {
    method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body),
  });
  if (resp.status === 401) {
    li.remove();
    showTokenView("The token was not accepted; enter it again.");
    return null;
  }
  if (!resp.ok) {
    let msg = await errorText(resp);
    const wait = resp.headers.get("Retry-After");
    if (resp.status === 503 && wait) msg += ` (try again in ${wait} s)`;
    renderError(li, msg);
    return null;
  }
  return resp;
}

async function ask(question) {
  state.busy = true;
  $("send").disabled = true;
  addTurn("user", question);
  const li = addTurn("assistant streaming");
  li.setAttribute("aria-busy", "true");
  const live = el("div", "text");
  li.appendChild(live);
  const body = { model: state.model, stream: true,
                 messages: state.messages.concat([{ role: "user", content: question }]) };
  try {
    const resp = await post("/v1/chat/completions", body, li);
    if (!resp) return;
    let content = "";
    let final = null;
    let streamError = null;
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) { streamError = chunk.error.message; continue; }
          const choice = chunk.choices && chunk.choices[0];
          if (choice && choice.delta && choice.delta.content) {
            content += choice.delta.content;
            live.textContent = unescapeMarkdown(content);
            li.scrollIntoView({ block: "end" });
          }
          if (chunk.paper_assistant) final = chunk;
        }
      }
    }
    if (streamError || !final) {
      renderError(li, streamError || "the answer stream ended early");
      return;
    }
    renderAnswer(li, final.paper_assistant, final.citations || []);
    state.messages.push({ role: "user", content: question });
    state.messages.push({ role: "assistant", content: content, citations: final.citations || [] });
  } catch (e) {
    renderError(li, "connection failed: " + e.message);
  } finally {
    li.removeAttribute("aria-busy");
    state.busy = false;
    $("send").disabled = false;
    li.scrollIntoView({ block: "end" });
  }
}

// -- verifying a claim ------------------------------------------------------------------------
const VERDICT_TEXT = { SUPPORT: "Supports", CONTRADICT: "Contradicts", MIXED: "Mixed evidence",
                       NOT_ENOUGH_EVIDENCE: "Not enough evidence" };

function renderVerdicts(li, v) {
  li.classList.remove("streaming");
  li.textContent = "";
  li.classList.add("verdicts");
  const head = el("div", "badge verdict-" + v.verdict.toLowerCase(), VERDICT_TEXT[v.verdict] || v.verdict);
  li.appendChild(head);
  const rows = v.papers.length ? v.papers : v.closest;
  if (!v.papers.length) {
    li.appendChild(el("p", "text", rows.length ? "No indexed paper bears on this claim. The closest papers:"
                                               : "No indexed paper bears on this claim."));
  }
  const list = el("ol", "verdict-papers");
  list.setAttribute("aria-label", v.papers.length ? "Papers bearing on the claim" : "Closest papers");
  for (const p of rows) {
    const item = el("li", "verdict-paper");
    const top = el("div", "verdict-head");
    const chip = el("span", "chip verdict-" + (v.papers.length ? p.verdict.toLowerCase() : "closest"),
                    v.papers.length ? (VERDICT_TEXT[p.verdict] || p.verdict) : "Closest");
    top.appendChild(chip);
    const b = el("button", "paper-title", p.title);
    b.type = "button";
    const cite = p.quotes.length ? { label: v.papers.length ? VERDICT_TEXT[p.verdict] : "Closest paper",
                                      quote: p.quotes[0].text, note: "The highlighted sentence is its first quote." }
                                  : null;
    b.addEventListener("click", () => openPaper(p.paper_id, cite, b));
    top.appendChild(b);
    top.appendChild(el("span", "confidence", `confidence ${p.confidence.toFixed(2)}` + (p.date ? ` · ${p.date}` : "")));
    item.appendChild(top);
    for (const q of p.quotes) item.appendChild(el("blockquote", "quote", q.text));
    list.appendChild(item);
  }
  li.appendChild(list);
}

async function verify(claim) {
  state.busy = true;
  $("send").disabled = true;
  $("verify").disabled = true;
  addTurn("user", "Verify: " + claim);
  const li = addTurn("assistant streaming");
  li.setAttribute("aria-busy", "true");
  li.appendChild(el("div", "text", "Checking the claim against the indexed papers…"));
  const body = { claim: claim };
  if (state.collection) body.collection = state.collection;
  try {
    const resp = await post("/v1/verify", body, li);
    if (!resp) return;
    renderVerdicts(li, await resp.json());
  } catch (e) {
    renderError(li, "connection failed: " + e.message);
  } finally {
    li.removeAttribute("aria-busy");
    state.busy = false;
    $("send").disabled = false;
    $("verify").disabled = false;
    li.scrollIntoView({ block: "end" });
  }
}

$("verify").addEventListener("click", () => {
  const q = $("question").value.trim();
  if (!q || state.busy) return;
  $("question").value = "";
  verify(q);
});

$("ask-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = $("question").value.trim();
  if (!q || state.busy) return;
  $("question").value = "";
  const m = /^\/verify\s+([\s\S]+)$/i.exec(q);
  if (m) verify(m[1].trim());
  else ask(q);
});

$("question").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $("ask-form").requestSubmit();
  }
});

$("reset").addEventListener("click", () => {
  state.messages = [];
  $("log").textContent = "";
  $("empty").hidden = false;
  $("cite-panel").hidden = true;
  $("question").focus();
});

connect();
