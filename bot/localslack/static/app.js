// localslack page: a Slack-like client for the local workspace.
// Talks only to the /ui/... API (see ../README.md). No framework: state lives in
// `S`, and each render function rebuilds its part of the DOM from it.
// Untrusted text is only ever inserted as text nodes (never innerHTML).
"use strict";

const HOME = "home"; // pseudo conversation id of the App Home entry

const S = {
  boot: null,            // /ui/bootstrap answer
  users: new Map(),      // user id -> user
  user: null,            // acting user id
  channel: null,         // selected conversation id, or HOME
  unread: new Map(),     // conversation id -> count of unseen messages
  thread: null,          // {channel, ts} of the open thread
  views: [],             // modal stack (top = last), as received from the server
  dismissed: new Set(),  // "channel:ts" of dismissed ephemerals
  events: null,          // the EventSource
  seq: 0,                // bumps on user/conversation switch: stale answers are dropped
};

// The connection to the workspace. When it is lost (a fetch cannot reach the server, or the
// event stream breaks) a banner says so and a probe retries with bounded backoff; once the
// server answers again the stream is reopened and the open conversation reloaded.
const RETRY_MIN_MS = 500, RETRY_MAX_MS = 5000;
const NET = {
  down: false,           // the banner is showing
  delay: RETRY_MIN_MS,   // the next probe's wait
  timer: null,           // the pending probe
  probing: false,        // a probe's fetch is in flight
};

const $ = (sel) => document.querySelector(sel);

// el("div.a.b", {attr: v, onclick: f}, child, "text", ...) -> element
function el(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// ---------------------------------------------------------------- HTTP

// fetch, but a network failure (no answer at all) starts the reconnect loop before it throws.
async function reach(url, init) {
  try {
    return await fetch(url, init);
  } catch {
    if (S.boot) connectionLost(true);
    throw new Error("Disconnected from the workspace");
  }
}

async function getJSON(path, params) {
  const r = await reach(path + "?" + new URLSearchParams(params || {}));
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

// Never throws: a network failure is `{ok: false, error: "disconnected"}`.
async function postJSON(path, body) {
  let r;
  try {
    r = await reach(path, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
    });
  } catch {
    return {ok: false, error: "disconnected"};
  }
  let data = {};
  try { data = await r.json(); } catch { /* empty or non-JSON body */ }
  if (!r.ok && data.ok === undefined) data = {ok: false, error: data.error || `HTTP ${r.status}`};
  return data;
}

// ---------------------------------------------------------------- connection

function setBanner(down) {
  NET.down = down;
  $("#net-banner").hidden = !down;
}

// Something failed to reach the server: probe after the current backoff, and keep probing
// until it answers. `sure`: a request got no answer at all, so say so at once; a broken
// event stream only shows the banner when the probe fails too (a stream may just end).
function connectionLost(sure = false) {
  if (sure) setBanner(true);
  if (!NET.timer && !NET.probing) scheduleProbe();
}

function scheduleProbe() {
  NET.timer = setTimeout(probe, NET.delay);
  NET.delay = Math.min(NET.delay * 2, RETRY_MAX_MS);
}

async function probe() {
  NET.timer = null;
  NET.probing = true;
  let ok = false;
  try { ok = (await fetch("/ui/bootstrap", {cache: "no-store"})).ok; } catch { ok = false; }
  NET.probing = false;
  if (ok) { reconnected(); return; }
  setBanner(true);
  scheduleProbe();
}

function reconnected() {
  setBanner(false);
  if (!S.events) openEvents(); // its `open` reloads the conversation
  else scheduleRefresh();
}

function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

// Friendly wording for the error codes the page shows in toasts.
function errorText(err) {
  if (err === "operation_timeout") return "The app did not respond (operation_timeout)";
  if (err === "disconnected") return "Not sent: disconnected from the workspace";
  return `Something went wrong: ${err}`;
}

function toast(text, kind) {
  // The same failure may arrive twice (an answer and a `notice` event): show it once.
  if ([...document.querySelectorAll(".toast")].some((t) => t.textContent === text)) return;
  const t = el("div.toast" + (kind ? "." + kind : ""), {role: "status"}, text);
  $("#toasts").append(t);
  setTimeout(() => t.remove(), 8000);
}

// ---------------------------------------------------------------- users, names, time

function userName(id) { return S.users.get(id)?.name || id; }
function botUser() { return S.users.get(S.boot.bot_user_id); }
function isBotMessage(m) { return !!m.bot_id || (m.user && m.user === S.boot.bot_user_id); }

const PALETTE = ["#e01e5a", "#2eb67d", "#ecb22e", "#36c5f0", "#9b59b6", "#e8912d", "#1264a3", "#4a154b"];
function colorFor(id) {
  let h = 0;
  for (const ch of String(id)) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

function avatar(id, name) {
  const a = el("div.avatar", {"aria-hidden": "true"}, (name || "?")[0].toUpperCase());
  a.style.background = colorFor(id);
  return a;
}

function fmtTime(ts) {
  const d = new Date(parseFloat(ts) * 1000);
  return d.toLocaleTimeString([], {hour: "numeric", minute: "2-digit"});
}

// ---------------------------------------------------------------- mrkdwn

const EMOJI = {
  white_check_mark: "✅", heavy_check_mark: "✔️", x: "❌", warning: "⚠️", rocket: "🚀",
  hourglass: "⌛", hourglass_flowing_sand: "⏳", lock: "🔒", no_entry: "⛔", no_entry_sign: "🚫",
  tada: "🎉", eyes: "👀", "+1": "👍", thumbsup: "👍", "-1": "👎", thumbsdown: "👎",
  red_circle: "🔴", large_green_circle: "🟢", large_yellow_circle: "🟡", stopwatch: "⏱️",
  alarm_clock: "⏰", bell: "🔔", memo: "📝", information_source: "ℹ️", robot_face: "🤖",
  package: "📦", arrows_counterclockwise: "🔄", leftwards_arrow_with_hook: "↩️", fire: "🔥",
  question: "❓", exclamation: "❗", bust_in_silhouette: "👤", clipboard: "📋", link: "🔗",
};

function decodeEntities(s) {
  return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

// Plain text: entities decoded (Slack escapes &<> in all text) and :emoji: codes replaced.
function plain(s) {
  return decodeEntities(String(s ?? "")).replace(/:([a-z0-9_+\-]+):/g, (m, n) => EMOJI[n] || m);
}

// An image that degrades to a grey square (with its alt text as tooltip) when it cannot
// load, which is the usual case for external URLs on an offline machine.
function img(cls, url, alt) {
  const i = el("img." + cls, {src: url, alt: alt || "", title: alt || null});
  i.addEventListener("error", () => i.replaceWith(el("span.img-missing." + cls, {title: alt || ""})));
  return i;
}

// `<!date^epoch^{date_short_pretty} at {time}|fallback>` in the reader's own time zone, as
// Slack shows it ("Today at 12:03 PM"); the fallback when the token is not understood.
function slackDate(target, fallback) {
  const [, epoch, format = ""] = target.split("^");
  const when = new Date(Number(epoch) * 1000);
  if (!epoch || Number.isNaN(when.getTime())) return document.createTextNode(plain(fallback || ""));
  const today = new Date(), yesterday = new Date(Date.now() - 864e5);
  const day = when.toDateString() === today.toDateString() ? "Today"
    : when.toDateString() === yesterday.toDateString() ? "Yesterday"
    : when.toLocaleDateString(undefined, {month: "short", day: "numeric", year: "numeric"});
  const time = when.toLocaleTimeString(undefined, {hour: "numeric", minute: "2-digit"});
  const text = format.replace(/\{date_short_pretty\}|\{date_pretty\}|\{date_long_pretty\}/g, day)
    .replace(/\{date_num\}/g, when.toISOString().slice(0, 10))
    .replace(/\{time\}/g, time).replace(/\{time_secs\}/g, when.toLocaleTimeString());
  return el("span.date", {title: when.toString()}, text || plain(fallback || ""));
}

function safeHref(url) {
  return /^(https?:|mailto:)/i.test(url) ? url : null;
}

// One `<...>` entity: mention, channel, special mention, date or link.
function angle(inner) {
  const [target, label] = splitOnce(inner, "|");
  if (target.startsWith("@")) {
    return el("span.mention", {}, "@" + (label ? plain(label) : userName(target.slice(1))));
  }
  if (target.startsWith("#")) {
    const c = S.boot.conversations.find((x) => x.id === target.slice(1));
    return el("span.mention", {}, "#" + (label ? plain(label) : c?.name || target.slice(1)));
  }
  if (target.startsWith("!")) {
    const word = target.slice(1).split("^")[0];
    if (["channel", "here", "everyone"].includes(word)) return el("span.mention.special", {}, "@" + word);
    if (word === "date") return slackDate(target, label);
    return document.createTextNode(plain(label || word)); // !subteam^…|fallback
  }
  const url = decodeEntities(target);
  const href = safeHref(url);
  const text = label ? plain(label) : url;
  return href ? el("a", {href, target: "_blank", rel: "noopener noreferrer"}, text)
              : document.createTextNode(text);
}

function splitOnce(s, sep) {
  const i = s.indexOf(sep);
  return i < 0 ? [s, ""] : [s.slice(0, i), s.slice(i + 1)];
}

// Inline spans. Formatting markers only count at word boundaries, like Slack
// (so snake_case_names stay as they are); formatting may nest (*_bold italic_*).
const INLINE = new RegExp([
  "`([^`\\n]+)`",                                       // 1 code
  "<([^<>\\s][^<>]*)>",                                   // 2 <link|mention>
  "(?<![\\w*])\\*(?!\\s)([^*\\n]+?)(?<!\\s)\\*(?![\\w*])", // 3 *bold*
  "(?<![\\w_])_(?!\\s)([^_\\n]+?)(?<!\\s)_(?![\\w_])",     // 4 _italic_
  "(?<![\\w~])~(?!\\s)([^~\\n]+?)(?<!\\s)~(?![\\w~])",     // 5 ~strike~
].join("|"), "g");

function inline(text, parent) {
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) parent.append(plain(text.slice(last, m.index)));
    if (m[1] != null) parent.append(el("code", {}, decodeEntities(m[1])));
    else if (m[2] != null) parent.append(angle(m[2]));
    else {
      const tag = m[3] != null ? "b" : m[4] != null ? "i" : "s";
      const node = el(tag);
      inline(m[3] ?? m[4] ?? m[5], node);
      parent.append(node);
    }
    last = m.index + m[0].length;
  }
  if (last < text.length) parent.append(plain(text.slice(last)));
}

// A mrkdwn string -> a DOM fragment: ```pre``` blocks, > quotes, then inline spans.
function mrkdwn(src) {
  const out = el("div.mrkdwn");
  const parts = String(src ?? "").split(/```/);
  parts.forEach((part, i) => {
    if (i % 2 === 1 && i < parts.length - 1) { // inside a ``` pair
      out.append(el("pre", {}, decodeEntities(part.replace(/^\n|\n$/g, ""))));
      return;
    }
    if (i % 2 === 1) part = "```" + part;       // unbalanced trailing fence: literal
    if (i > 0) part = part.replace(/^\n/, "");           // the newline right after a fence
    if (i < parts.length - 1) part = part.replace(/\n$/, ""); // and right before one
    let quote = null;
    const lines = part.split("\n");
    lines.forEach((line, j) => {
      const q = line.match(/^(?:>|&gt;) ?(.*)$/);
      if (q) {
        if (!quote) out.append((quote = el("blockquote")));
        else quote.append(el("br"));
        inline(q[1], quote);
        return;
      }
      quote = null;
      inline(line, out);
      if (j < lines.length - 1) out.append(el("br"));
    });
  });
  return out;
}

// A Block Kit text object -> node
function textObj(t) {
  if (!t) return document.createTextNode("");
  if (typeof t === "string") return mrkdwn(t);
  return t.type === "mrkdwn" ? mrkdwn(t.text) : el("span.plain", {}, plain(t.text));
}

// ---------------------------------------------------------------- Block Kit

// ctx: {channel?, message_ts?, view_id?} — where an action comes from.
function renderBlocks(blocks, ctx) {
  return (blocks || []).map((b, i) => renderBlock(b, i, ctx)).filter(Boolean);
}

function renderBlock(b, i, ctx) {
  const attrs = {dataset: {blockId: b.block_id || ""}};
  switch (b.type) {
    case "header":
      return el("div.block.b-header", attrs, plain(b.text?.text));
    case "divider":
      return el("hr.block.b-divider", attrs);
    case "section": {
      const body = el("div.b-section-body");
      if (b.text) body.append(textObj(b.text));
      if (b.fields?.length) body.append(el("div.b-fields", {}, b.fields.map(textObj)));
      const acc = b.accessory ? renderElement(b.accessory, b, ctx) : null;
      return el("div.block.b-section", attrs, body, acc && el("div.b-accessory", {}, acc));
    }
    case "context":
      return el("div.block.b-context", attrs, (b.elements || []).map((e) =>
        e.type === "image" ? img("ctx-img", e.image_url, e.alt_text) : textObj(e)));
    case "actions":
      return el("div.block.b-actions", attrs,
        (b.elements || []).map((e) => renderElement(e, b, ctx)).filter(Boolean));
    case "image":
      return el("figure.block.b-image", attrs,
        b.title && el("figcaption", {}, plain(b.title.text)),
        img("full-img", b.image_url, b.alt_text));
    case "input":
      return renderInput(b, i);
    case "rich_text": // what Slack clients post; show its plain text
      return el("div.block", attrs, plain(richText(b)));
    default:
      return null;
  }
}

function richText(node) {
  if (node.type === "text") return node.text;
  if (node.type === "link") return node.text || node.url;
  if (node.type === "user") return "@" + userName(node.user_id);
  if (node.type === "emoji") return `:${node.name}:`;
  return (node.elements || []).map(richText).join("");
}

// An interactive element (button, select, image) inside a section or actions block.
function renderElement(e, block, ctx) {
  if (e.type === "image") return img("acc-img", e.image_url, e.alt_text);
  if (e.type === "button") {
    const btn = el("button.btn" + (e.style ? "." + e.style : ""), {type: "button"}, plain(e.text?.text));
    btn.addEventListener("click", async () => {
      if (e.confirm && !(await confirmDialog(e.confirm))) return;
      if (e.url && safeHref(e.url)) window.open(e.url, "_blank", "noopener");
      btn.disabled = true;
      await sendAction(ctx, e, block, e.value);
      btn.disabled = false;
    });
    return btn;
  }
  if (e.type === "static_select" || e.type === "overflow") {
    const opts = e.options || (e.option_groups || []).flatMap((g) => g.options);
    const sel = el("select.btn", {"aria-label": plain(e.placeholder?.text || "Choose")},
      el("option", {value: ""}, e.type === "overflow" ? "⋯" : plain(e.placeholder?.text || "Select…")),
      opts.map((o) => el("option", {value: o.value}, plain(o.text?.text))));
    sel.addEventListener("change", async () => {
      const o = opts.find((x) => x.value === sel.value);
      if (!o || (e.confirm && !(await confirmDialog(e.confirm)))) return;
      await sendAction(ctx, e, block, o.value);
    });
    return sel;
  }
  return null;
}

async function sendAction(ctx, e, block, value) {
  const body = {user: S.user, action_id: e.action_id, block_id: block.block_id, ...ctx};
  if (value !== undefined) body.value = value;
  const r = await postJSON("/ui/action", body);
  if (!r.ok) toast(errorText(r.error), "error");
}

// Input blocks (modals). Each control is named "<block_id>.<action_id>".
function renderInput(b, i) {
  const e = b.element || {};
  const bid = b.block_id || `block_${i}`, aid = e.action_id || `action_${i}`;
  const name = `${bid}.${aid}`;
  let control;
  if (e.type === "checkboxes") {
    const initial = new Set((e.initial_options || []).map((o) => o.value));
    control = el("div.checks", {}, (e.options || []).map((o) => el("label.check", {},
      el("input", {type: "checkbox", name, value: o.value, checked: initial.has(o.value)}),
      " ", plain(o.text?.text))));
  } else if (e.type === "radio_buttons") {
    control = el("div.checks", {role: "radiogroup", "aria-label": plain(b.label?.text)},
      (e.options || []).map((o) => el("label.check", {},
        el("input", {type: "radio", name, value: o.value,
          checked: e.initial_option?.value === o.value}),
        " ", plain(o.text?.text))));
  } else if (e.type === "number_input") {
    control = el("input", {name, type: "number", step: e.is_decimal_allowed ? "any" : "1",
      min: e.min_value ?? null, max: e.max_value ?? null,
      placeholder: e.placeholder ? plain(e.placeholder.text) : null});
    if (e.initial_value != null) control.value = e.initial_value;
  } else if (e.type === "static_select") {
    control = el("select", {name},
      el("option", {value: ""}, plain(e.placeholder?.text || "Select an option")),
      (e.options || []).map((o) => el("option", {value: o.value,
        selected: e.initial_option?.value === o.value}, plain(o.text?.text))));
  } else {
    control = el(e.multiline ? "textarea" : "input", {
      name, type: e.multiline ? null : "text", rows: e.multiline ? 4 : null,
      placeholder: e.placeholder ? plain(e.placeholder.text) : null,
      maxlength: e.max_length || null,
    });
    if (e.initial_value != null) control.value = e.initial_value;
  }
  control.id = "in-" + name;
  return el("div.block.b-input", {dataset: {blockId: bid}},
    el("label", {for: control.id}, plain(b.label?.text),
      b.optional && el("span.muted", {}, " (optional)")),
    control,
    b.hint && el("div.hint", {}, plain(b.hint.text)),
    el("div.input-error", {hidden: true}));
}

// ---------------------------------------------------------------- dialogs

// Slack's confirm object -> Promise<boolean>
function confirmDialog(c) {
  return new Promise((resolve) => {
    const box = $("#confirm"), overlay = $("#confirm-overlay");
    const done = (v) => { overlay.hidden = true; box.replaceChildren(); resolve(v); };
    box.replaceChildren(
      el("h2", {}, plain(c.title?.text || "Are you sure?")),
      el("div.modal-body", {}, textObj(c.text)),
      el("div.modal-foot", {},
        el("button.btn", {type: "button", onclick: () => done(false)}, plain(c.deny?.text || "Cancel")),
        el("button.btn." + (c.style === "danger" ? "danger" : "primary"),
          {type: "button", onclick: () => done(true)}, plain(c.confirm?.text || "Yes"))));
    overlay.hidden = false;
    box.querySelector(".modal-foot .btn:last-child").focus();
  });
}

function renderModal() {
  const overlay = $("#modal-overlay"), box = $("#modal");
  const v = S.views[S.views.length - 1];
  if (!v) { overlay.hidden = box.hidden = true; box.replaceChildren(); return; }
  // Keep what the user typed when the same view is re-rendered (Slack keeps input state).
  const typed = box.dataset.viewId === v.id ? collectControls(box) : {};
  box.dataset.viewId = v.id;
  box.replaceChildren(
    el("header.modal-head", {},
      el("h2", {}, plain(v.title?.text)),
      el("button.icon-btn", {type: "button", "aria-label": "Exit dialog", onclick: () => closeModal(v)}, "✕")),
    el("div.modal-body", {}, renderBlocks(v.blocks, {view_id: v.id})),
    el("div.modal-foot", {},
      el("button.btn", {type: "button", onclick: () => closeModal(v)}, plain(v.close?.text || "Cancel")),
      v.submit && el("button.btn.primary.submit", {type: "button", onclick: () => submitModal(v)},
        plain(v.submit.text))));
  for (const [name, value] of Object.entries(typed)) {
    const [control, option] = name.split("\u0000");
    const sel = `[name="${CSS.escape(control)}"]` + (option === undefined ? "" : `[value="${CSS.escape(option)}"]`);
    const c = box.querySelector(sel);
    if (c && option !== undefined) c.checked = value;
    else if (c) c.value = value;
  }
  overlay.hidden = box.hidden = false;
}

function collectControls(box) {
  const out = {};
  box.querySelectorAll("[name]").forEach((c) => {
    out[c.type === "checkbox" ? `${c.name}\u0000${c.value}` : c.name] =
      c.type === "checkbox" ? c.checked : c.value;
  });
  return out;
}

function showInputErrors(errors) {
  const box = $("#modal");
  box.querySelectorAll(".input-error").forEach((d) => { d.hidden = true; d.textContent = ""; });
  for (const [bid, msg] of Object.entries(errors)) {
    const block = [...box.querySelectorAll(".b-input")].find((b) => b.dataset.blockId === bid);
    const slot = block?.querySelector(".input-error");
    if (slot) { slot.textContent = msg; slot.hidden = false; }
    else toast(`${bid}: ${msg}`, "error");
  }
}

async function submitModal(v) {
  const box = $("#modal");
  const values = {}, errors = {};
  (v.blocks || []).forEach((b, i) => {
    if (b.type !== "input") return;
    const e = b.element || {};
    const bid = b.block_id || `block_${i}`, aid = e.action_id || `action_${i}`;
    const name = CSS.escape(bid + "." + aid);
    if (e.type === "checkboxes") {  // state: the ticked options, as Slack sends them
      const ticked = [...box.querySelectorAll(`[name="${name}"]:checked`)].map((c) =>
        (e.options || []).find((o) => o.value === c.value)).filter(Boolean);
      if (!b.optional && !ticked.length) errors[bid] = "Please complete this required field.";
      values[bid] = {[aid]: {type: "checkboxes", selected_options: ticked}};
      return;
    }
    if (e.type === "radio_buttons") {  // state: the picked option, as Slack sends it
      const picked = box.querySelector(`[name="${name}"]:checked`);
      const option = picked && (e.options || []).find((o) => o.value === picked.value);
      if (!b.optional && !option) errors[bid] = "Please complete this required field.";
      values[bid] = {[aid]: {type: "radio_buttons", selected_option: option || null}};
      return;
    }
    const c = box.querySelector(`[name="${name}"]`);
    const val = c ? c.value : "";
    // Slack's client-side checks before anything is sent to the app
    if (!b.optional && val === "") errors[bid] = "Please complete this required field.";
    else if (e.type === "number_input" && c && !c.validity.valid) errors[bid] = "Enter a valid number.";
    else if (e.min_length && val && val.length < e.min_length) errors[bid] = `Must be at least ${e.min_length} characters.`;
    values[bid] = {[aid]: e.type === "static_select"
      ? {type: "static_select", selected_option: val ? {value: val,
          text: {type: "plain_text", text: c.selectedOptions[0].textContent}} : null}
      : {type: e.type || "plain_text_input", value: val === "" ? null : val}};
  });
  if (Object.keys(errors).length) { showInputErrors(errors); return; }
  const btn = box.querySelector(".submit");
  if (btn) btn.disabled = true;
  const r = await postJSON("/ui/submit", {user: S.user, view_id: v.id, values});
  if (btn) btn.disabled = false;
  if (r.errors && Object.keys(r.errors).length) showInputErrors(r.errors);
  else if (!r.ok) toast(errorText(r.error), "error");
  // Accepted: the modal closes, unless the app replaced it or pushed another view meanwhile.
  else if (S.views[S.views.length - 1] === v) { S.views.pop(); renderModal(); }
}

async function closeModal(v) {
  S.views = S.views.filter((x) => x.id !== v.id);
  renderModal();
  await postJSON("/ui/close", {user: S.user, view_id: v.id});
}

// ---------------------------------------------------------------- messages

function renderMessage(m, channel, opts = {}) {
  const bot = isBotMessage(m);
  const name = m.username || (bot ? botUser()?.name || "app" : userName(m.user));
  const id = bot ? S.boot.bot_user_id : m.user;
  const body = el("div.msg-body");
  const blocks = renderBlocks(m.blocks, {channel, message_ts: m.ts});
  body.append(...(blocks.length ? blocks : [mrkdwn(m.text)]));
  for (const a of m.attachments || []) { // legacy attachments: coloured bar + content
    const att = el("div.attachment", {}, renderBlocks(a.blocks, {channel, message_ts: m.ts}),
      !a.blocks && mrkdwn(a.text || a.fallback || ""));
    if (a.color) att.style.borderLeftColor = a.color.startsWith("#") ? a.color : "#" + a.color;
    body.append(att);
  }
  const node = el("div.message" + (m.ephemeral ? ".ephemeral" : ""), {dataset: {ts: m.ts}},
    avatar(id, name),
    el("div.msg-main", {},
      m.ephemeral && el("div.eph-note", {}, "Only visible to you · ",
        el("button.link", {type: "button", onclick: () => {
          S.dismissed.add(`${channel}:${m.ts}`); node.remove();
        }}, "Dismiss")),
      el("div.msg-meta", {},
        el("span.author", {title: S.users.get(id)?.real_name || ""}, name),
        bot && el("span.app-badge", {}, "APP"),
        el("span.time", {title: new Date(parseFloat(m.ts) * 1000).toLocaleString()}, fmtTime(m.ts)),
        m.edited && el("span.muted", {}, "(edited)")),
      body,
      !opts.inThread && m.reply_count > 0 && el("button.link.replies", {type: "button",
        onclick: () => openThread(channel, m.ts)},
        m.reply_count === 1 ? "1 reply" : `${m.reply_count} replies`),
      // Slack's hover action: start (or open) the message's thread
      !opts.inThread && !m.ephemeral && !(m.reply_count > 0) && el("button.link.reply-in-thread",
        {type: "button", title: "Reply in thread", onclick: () => openThread(channel, m.ts)},
        "Reply in thread")));
  return node;
}

// A refresh that finds nothing changed leaves the DOM alone, and an unchanged message keeps
// its node: replacing the button under someone's pointer would swallow their click.
function fillList(list, messages, channel, opts) {
  const shown = messages.filter((m) => !(m.ephemeral && S.dismissed.has(`${channel}:${m.ts}`)));
  const sigs = shown.map((m) => `${S.user}|${channel}|${JSON.stringify(m)}`);
  const now = [...list.children];
  if (sigs.length === now.length && sigs.every((sig, i) => now[i]._sig === sig)) return;
  const old = new Map(now.map((n) => [n._sig, n]));
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  const keep = list.scrollTop;
  list.replaceChildren(...shown.map((m, i) =>
    old.get(sigs[i]) || Object.assign(renderMessage(m, channel, opts), {_sig: sigs[i]})));
  list.scrollTop = nearBottom || opts?.forceBottom ? list.scrollHeight : keep;
}

function conv(id) { return S.boot.conversations.find((c) => c.id === id); }
// The acting user's DM with the app (`user` is the person; `members` accepted too).
function myDM() {
  return S.boot.conversations.find((c) => c.is_im && (c.user === S.user || c.members?.includes(S.user)));
}
function convLabel(c) { return c.is_im ? botUser()?.name || "app" : "#" + c.name; }

async function loadHistory(forceBottom) {
  const seq = S.seq, channel = S.channel, list = $("#messages");
  if (channel === HOME) return loadHome();
  const r = await getJSON("/ui/history", {user: S.user, channel});
  if (seq !== S.seq) return;
  if (!r.messages?.length) {
    list.replaceChildren(el("div.empty", {}, `This is the very beginning of ${convLabel(conv(channel))}.`));
    return;
  }
  fillList(list, r.messages, channel, {forceBottom});
}

// `opened`: the person opened the tab (Slack then sends app_home_opened). A refresh after the
// app published must not, or every publish would trigger the next one.
async function loadHome(opened = true) {
  const seq = S.seq;
  const r = await getJSON("/ui/home", {user: S.user, opened: opened ? "1" : "0"});
  if (seq !== S.seq || S.channel !== HOME) return;
  const v = r.view;
  $("#messages").replaceChildren(v
    ? el("div.home", {}, renderBlocks(v.blocks, {view_id: v.id}))
    : el("div.empty", {}, "This app has not published a home view yet."));
}

// ---------------------------------------------------------------- threads

async function openThread(channel, ts) {
  S.thread = {channel, ts};
  $("#thread").hidden = false;
  $("#thread-channel").textContent = convLabel(conv(channel));
  await loadThread(true);
  $("#thread-composer").focus();
}

function closeThread() {
  S.thread = null;
  $("#thread").hidden = true;
}

async function loadThread(forceBottom) {
  if (!S.thread) return;
  const seq = S.seq, {channel, ts} = S.thread;
  const r = await getJSON("/ui/replies", {user: S.user, channel, ts});
  if (seq !== S.seq || S.thread?.ts !== ts) return;
  const [parent, ...replies] = r.messages || [];
  const list = $("#thread-messages");
  fillList(list, parent ? [parent] : [], channel, {inThread: true});
  if (replies.length) {
    list.append(el("div.replies-sep", {}, replies.length === 1 ? "1 reply" : `${replies.length} replies`));
    for (const m of replies) list.append(renderMessage(m, channel, {inThread: true}));
  }
  if (forceBottom || replies.length) list.scrollTop = list.scrollHeight;
}

// ---------------------------------------------------------------- sidebar, header

function renderSidebar() {
  const item = (id, label, icon) => {
    const n = S.unread.get(id) || 0;
    return el("li", {}, el("button.conv" + (id === S.channel ? ".active" : "") + (n ? ".unread" : ""),
      {type: "button", dataset: {channel: id}, onclick: () => selectConversation(id)},
      el("span.icon", {}, icon), el("span.label", {}, label), n > 0 && el("span.badge", {}, n)));
  };
  const convs = S.boot.conversations;
  $("#channel-list").replaceChildren(...convs.filter((c) => c.is_channel).map((c) => item(c.id, c.name, "#")));
  const dm = myDM(), bot = botUser();
  $("#dm-list").replaceChildren(
    dm && item(dm.id, bot?.name || "app", avatar(bot?.id, bot?.name)),
    item(HOME, "App Home", "⌂"));
}

function renderHeader() {
  const h = $("#conv-header"), bot = botUser();
  const dm = myDM();
  if (S.channel === HOME || conv(S.channel)?.is_im) {
    const tab = (label, id) => el("button.tab" + (S.channel === id ? ".active" : ""),
      {type: "button", dataset: {tab: label.toLowerCase()}, onclick: () => selectConversation(id)}, label);
    h.replaceChildren(el("div.title", {}, avatar(bot?.id, bot?.name), bot?.name || "app",
      el("span.app-badge", {}, "APP")),
      el("nav.tabs", {}, tab("Home", HOME), dm && tab("Messages", dm.id)));
  } else {
    const c = conv(S.channel);
    h.replaceChildren(el("div.title", {}, "# " + (c?.name || S.channel)));
  }
  const composing = S.channel !== HOME;
  $("#composer-wrap").hidden = !composing;
  if (composing) $("#composer").placeholder = "Message " + convLabel(conv(S.channel));
}

async function selectConversation(id) {
  if (id !== HOME && !conv(id)) id = S.boot.conversations.find((c) => c.is_channel)?.id;
  if (S.channel !== id) { S.seq++; closeThread(); }
  S.channel = id;
  S.unread.delete(id);
  saveLocation();
  renderSidebar();
  renderHeader();
  $("#messages").replaceChildren();
  try { await loadHistory(true); } catch (err) { toast(String(err.message || err), "error"); }
  if (id !== HOME) $("#composer").focus();
}

// ---------------------------------------------------------------- user and URL

function saveLocation() {
  history.replaceState(null, "", "#" + new URLSearchParams({user: S.user, channel: S.channel}));
  localStorage.setItem("localslack.user", S.user);
}

function switchUser(id) {
  const wasMyDM = conv(S.channel)?.is_im;
  S.user = id;
  S.seq++;
  S.unread.clear();
  S.views = [];
  S.dismissed.clear();
  renderModal();
  closeThread();
  $("#user-switcher").value = id;
  openEvents();
  // A DM is per person: follow the new user to theirs.
  const target = wasMyDM ? myDM()?.id : S.channel;
  S.channel = null;
  selectConversation(target);
}

// ---------------------------------------------------------------- live updates

let refreshTimer = null;
function scheduleRefresh() { // coalesce bursts of events into one fetch each
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    (S.channel === HOME ? loadHome(false) : loadHistory()).catch(() => {});
    loadThread().catch(() => {});
  }, 60);
}

function onEvent(ev) {
  switch (ev.type) {
    case "message": case "message_changed": case "message_deleted": {
      const threadHit = S.thread && S.thread.channel === ev.channel;
      if (ev.channel === S.channel || threadHit) { scheduleRefresh(); return; }
      const reply = ev.thread_ts && ev.thread_ts !== ev.ts;
      if (ev.type === "message" && !reply && conv(ev.channel)) {
        S.unread.set(ev.channel, (S.unread.get(ev.channel) || 0) + 1);
        renderSidebar();
      }
      return;
    }
    case "view_open": case "view_update": {
      const i = S.views.findIndex((v) => v.id === ev.view.id);
      if (i >= 0) S.views[i] = ev.view;
      else if (ev.type === "view_open") S.views.push(ev.view);
      renderModal();
      return;
    }
    case "view_close":
      S.views = S.views.filter((v) => v.id !== ev.view_id);
      renderModal();
      return;
    case "home":
      if (S.channel === HOME) loadHome(false).catch(() => {});
      return;
    case "notice":
    { // a bare error code ("operation_timeout") gets the friendly wording
      const t = ev.text || ev.error || "";
      const code = /^[a-z_]+$/.test(t);
      toast(code ? errorText(t) : t, code ? "error" : null);
    }
      return;
  }
}

const EVENT_TYPES = ["message", "message_changed", "message_deleted", "view_open",
  "view_update", "view_close", "home", "notice"];

function openEvents() {
  if (S.events) S.events.close();
  const es = new EventSource("/ui/events?" + new URLSearchParams({user: S.user}));
  const handle = (msg) => {
    if (es !== S.events) return;
    let ev;
    try { ev = JSON.parse(msg.data); } catch { return; }
    if (!ev.type && msg.type !== "message") ev.type = msg.type;
    onEvent(ev);
  };
  es.onmessage = handle;                                      // unnamed events
  for (const t of EVENT_TYPES) if (t !== "message") es.addEventListener(t, handle); // `event: x` lines
  es.onopen = () => { // catch up after a reconnect
    if (es !== S.events) return;
    NET.delay = RETRY_MIN_MS;
    scheduleRefresh();
  };
  // The stream broke (server gone, or it ended the stream): take over reconnecting from the
  // browser's own fixed-interval retry, so the banner and the backoff are ours.
  es.onerror = () => {
    if (es !== S.events) return;
    es.close();
    S.events = null;
    connectionLost();
  };
  S.events = es;
}

// ---------------------------------------------------------------- composers

// What Slack's client does to typed text before posting a message: escape & < >, and
// auto-link bare URLs, and turn @name / @here / #channel into mention entities.
// Slash commands go as typed.
function toSlackText(text) {
  if (text.startsWith("/")) return text;
  const byName = new Map([...S.users.values()].map((u) => [u.name.toLowerCase(), u.id]));
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/(^|\s)(https?:\/\/[^\s<>]+)/g, "$1<$2>")
    .replace(/(^|[\s(])@([\w.\-]+)/g, (m, pre, name) => {
      const low = name.toLowerCase();
      if (["here", "channel", "everyone"].includes(low)) return `${pre}<!${low}>`;
      return byName.has(low) ? `${pre}<@${byName.get(low)}>` : m;
    })
    .replace(/(^|[\s(])#([\w\-]+)/g, (m, pre, name) => {
      const c = S.boot.conversations.find((x) => x.is_channel && x.name === name);
      return c ? `${pre}<#${c.id}|${name}>` : m;
    });
}

// The typed text stays in the box until the server has accepted it: a failed send (no
// connection, or `ok: false`) leaves it there with an inline error, ready to send again.
function setupComposer(ta, sendBtn, errorBox, getTarget, hints) {
  const grow = () => { ta.style.height = "auto"; ta.style.height = Math.min(ta.scrollHeight, 200) + "px"; };
  const showError = (text) => { errorBox.textContent = text || ""; errorBox.hidden = !text; };
  let sending = false;
  const send = async () => {
    const text = ta.value;
    if (!text.trim() || sending) return;
    sending = true;
    sendBtn.disabled = true;
    if (hints) hints.hide();
    const r = await postJSON("/ui/message", {user: S.user, text: toSlackText(text), ...getTarget()});
    sending = false;
    sendBtn.disabled = false;
    if (!r.ok) { showError(errorText(r.error)); return; }
    showError("");
    if (ta.value === text) { ta.value = ""; grow(); } // unless more was typed meanwhile
    scheduleRefresh();
  };
  ta.addEventListener("keydown", (e) => {
    if (hints && hints.key(e)) return;
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  ta.addEventListener("input", () => { grow(); showError(""); if (hints) hints.update(); });
  sendBtn.addEventListener("click", send);
}

// The "/" popup: matching commands while the command word is typed, then its usage hint.
function slashHints(ta, box) {
  let matches = [], sel = 0;
  const cmds = () => S.boot.commands || [];
  const hide = () => { box.hidden = true; matches = []; };
  const pick = (c) => { ta.value = c.command + " "; hide(); update(); ta.focus(); };
  function update() {
    const v = ta.value;
    if (!v.startsWith("/")) return hide();
    const word = v.split(/\s/)[0];
    const typingWord = !/\s/.test(v);
    matches = typingWord ? cmds().filter((c) => c.command.startsWith(word)) : cmds().filter((c) => c.command === word);
    if (!matches.length) return hide();
    sel = Math.min(sel, matches.length - 1);
    box.replaceChildren(...matches.map((c, i) => el("div.hint-row" + (typingWord && i === sel ? ".sel" : ""),
      {onmousedown: (e) => { e.preventDefault(); pick(c); }},
      el("b", {}, c.command), " ", el("span.usage", {}, c.usage_hint || ""),
      el("div.muted", {}, c.description || ""))));
    box.hidden = false;
  }
  // Returns true when the key was handled by the popup.
  function key(e) {
    if (box.hidden || /\s/.test(ta.value)) return false;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      sel = (sel + (e.key === "ArrowDown" ? 1 : -1) + matches.length) % matches.length;
      update(); e.preventDefault(); return true;
    }
    if (e.key === "Escape") { hide(); return true; }
    // Tab, or Enter on a partial command word, completes; Enter on an exact command sends.
    if (e.key === "Tab" || (e.key === "Enter" && !e.shiftKey && !cmds().some((c) => c.command === ta.value))) {
      e.preventDefault(); pick(matches[sel]); return true;
    }
    return false;
  }
  return {update, key, hide};
}

// ---------------------------------------------------------------- start

// The first bootstrap, retried with the same bounded backoff until the server answers.
async function bootstrap() {
  for (let delay = RETRY_MIN_MS; ; delay = Math.min(delay * 2, RETRY_MAX_MS)) {
    try {
      const r = await fetch("/ui/bootstrap", {cache: "no-store"});
      if (r.ok) { setBanner(false); return await r.json(); }
    } catch { /* unreachable: retry */ }
    setBanner(true);
    await sleep(delay);
  }
}

async function start() {
  S.boot = await bootstrap();
  S.boot.conversations ||= [];
  for (const u of S.boot.users || []) S.users.set(u.id, u);
  const team = S.boot.team;
  $("#team-name").textContent = typeof team === "string" ? team : team?.name || "Local Workspace";
  document.title = $("#team-name").textContent + " – Local Slack";

  const people = (S.boot.users || []).filter((u) => !u.is_bot && u.id !== S.boot.bot_user_id);
  const sw = $("#user-switcher");
  sw.replaceChildren(...people.map((u) => el("option", {value: u.id}, u.name)));
  sw.addEventListener("change", () => switchUser(sw.value));

  const hash = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams(location.search);
  const wanted = [hash.get("user"), query.get("user"), localStorage.getItem("localslack.user")];
  const user = wanted.find((u) => u && S.users.has(u)) || people[0]?.id;
  const channel = hash.get("channel") || query.get("channel");

  setupComposer($("#composer"), $("#send"), $("#composer-error"), () => ({channel: S.channel}),
    slashHints($("#composer"), $("#slash-hints")));
  setupComposer($("#thread-composer"), $("#thread-send"), $("#thread-composer-error"),
    () => ({channel: S.thread.channel, thread_ts: S.thread.ts}));
  $("#thread-close").addEventListener("click", closeThread);
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    if (!$("#confirm-overlay").hidden) $("#confirm-overlay .btn").click();
    else if (S.views.length) closeModal(S.views[S.views.length - 1]);
  });

  // Editing the URL hash by hand (or a test's goto) switches user / conversation.
  window.addEventListener("hashchange", () => {
    const h = new URLSearchParams(location.hash.slice(1));
    const u = h.get("user"), c = h.get("channel");
    if (c && c !== S.channel) S.channel = c;
    if (u && u !== S.user && S.users.has(u)) switchUser(u);
    else if (c) { S.channel = null; selectConversation(c); }
  });

  S.channel = channel;
  switchUser(user);
}

start();
