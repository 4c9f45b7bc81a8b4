/*
 * textdesk web chat widget. Vendored and served by textdesk at
 * /chat/widget.js; no build step, no dependencies.
 *
 * Embed with one tag on the owner's site:
 *   <script src="https://desk.example.com/chat/widget.js" data-business="haul" async></script>
 * The API is the script's own origin; `data-business` is the business id
 * (optional when textdesk serves one business). Optional: data-title.
 *
 * Message text is only ever set with textContent: never parsed as HTML.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__textdeskChat) return;
  window.__textdeskChat = true;
  var api = new URL(script.src, document.baseURI).origin;
  var business = script.getAttribute("data-business") || "";
  var title = script.getAttribute("data-title") || "Chat with us";
  var key = "textdesk-chat:" + api + ":" + business;
  var saved = {};
  try { saved = JSON.parse(localStorage.getItem(key) || "{}") || {}; } catch (e) { saved = {}; }
  var token = saved.token || null;
  var after = saved.after || 0;
  var transcript = Array.isArray(saved.transcript) ? saved.transcript : [];
  var polling = null;

  function save() {
    try {
      localStorage.setItem(key, JSON.stringify({
        token: token, after: after, transcript: transcript.slice(-100)
      }));
    } catch (e) { /* storage may be off; the chat still works */ }
  }

  var css =
    ".tdc-bubble{position:fixed;right:16px;bottom:16px;z-index:2147483000;border:0;border-radius:28px;" +
    "background:#1f5fbf;color:#fff;font:600 16px/1 system-ui,sans-serif;padding:16px 20px;cursor:pointer;" +
    "box-shadow:0 4px 14px rgba(0,0,0,.25)}" +
    ".tdc-bubble:focus-visible,.tdc-panel button:focus-visible,.tdc-panel textarea:focus-visible{outline:3px solid #f5a623;outline-offset:2px}" +
    ".tdc-panel{position:fixed;right:16px;bottom:80px;z-index:2147483001;width:360px;max-width:calc(100vw - 32px);" +
    "height:480px;max-height:calc(100vh - 112px);display:flex;flex-direction:column;background:#fff;color:#1a1a1a;" +
    "border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.3);font:15px/1.4 system-ui,sans-serif;overflow:hidden;box-sizing:border-box}" +
    ".tdc-panel[hidden]{display:none}" +
    ".tdc-head{display:flex;align-items:center;justify-content:space-between;background:#1f5fbf;color:#fff;padding:12px 14px}" +
    ".tdc-head h2{margin:0;font-size:16px}" +
    ".tdc-close{background:transparent;border:0;color:#fff;font-size:22px;line-height:1;cursor:pointer;padding:4px 8px}" +
    ".tdc-log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;margin:0;list-style:none}" +
    ".tdc-msg{max-width:85%;padding:8px 12px;border-radius:12px;white-space:pre-wrap;overflow-wrap:anywhere}" +
    ".tdc-me{align-self:flex-end;background:#1f5fbf;color:#fff}" +
    ".tdc-them{align-self:flex-start;background:#eef1f5;color:#1a1a1a}" +
    ".tdc-note{align-self:center;color:#555;font-size:13px}" +
    ".tdc-form{display:flex;gap:8px;border-top:1px solid #ddd;padding:10px}" +
    ".tdc-form textarea{flex:1;min-width:0;resize:none;font:inherit;padding:8px;border:1px solid #999;border-radius:8px}" +
    ".tdc-form button{background:#1f5fbf;color:#fff;border:0;border-radius:8px;padding:0 14px;font:600 15px system-ui,sans-serif;cursor:pointer}" +
    ".tdc-form button[disabled]{opacity:.6;cursor:wait}" +
    ".tdc-sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}" +
    "@media (max-width:480px){.tdc-panel{right:0;left:0;bottom:0;width:100vw;max-width:100vw;height:100%;max-height:100%;border-radius:0}}";

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text != null) node.textContent = text;
    return node;
  }

  var style = el("style");
  style.textContent = css;
  document.head.appendChild(style);

  var bubble = el("button", {
    "class": "tdc-bubble", type: "button", "aria-haspopup": "dialog",
    "aria-expanded": "false", "aria-controls": "tdc-panel"
  }, title);
  var panel = el("section", {
    "class": "tdc-panel", id: "tdc-panel", role: "dialog", "aria-modal": "false",
    "aria-labelledby": "tdc-title", hidden: ""
  });
  var head = el("div", { "class": "tdc-head" });
  head.appendChild(el("h2", { id: "tdc-title" }, title));
  var close = el("button", { "class": "tdc-close", type: "button", "aria-label": "Close chat" }, "\u00d7");
  head.appendChild(close);
  var log = el("ol", { "class": "tdc-log", role: "log", "aria-live": "polite", "aria-label": "Messages" });
  var form = el("form", { "class": "tdc-form" });
  var label = el("label", { "for": "tdc-input", "class": "tdc-sr" }, "Your message");
  var input = el("textarea", { id: "tdc-input", rows: "2", maxlength: "1000", placeholder: "Type a message" });
  var send = el("button", { type: "submit" }, "Send");
  form.appendChild(label);
  form.appendChild(input);
  form.appendChild(send);
  panel.appendChild(head);
  panel.appendChild(log);
  panel.appendChild(form);
  document.body.appendChild(bubble);
  document.body.appendChild(panel);

  function show(kind, text, keep) {
    var cls = kind === "me" ? "tdc-me" : kind === "them" ? "tdc-them" : "tdc-note";
    var item = el("li", { "class": "tdc-msg " + cls });
    if (kind !== "note") {
      item.appendChild(el("span", { "class": "tdc-sr" }, kind === "me" ? "You: " : "Reply: "));
    }
    item.appendChild(document.createTextNode(text));
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
    if (keep !== false && kind !== "note") {
      transcript.push({ k: kind, t: text });
      save();
    }
  }
  transcript.forEach(function (m) { show(m.k, m.t, false); });

  function open() {
    panel.hidden = false;
    bubble.setAttribute("aria-expanded", "true");
    input.focus();
  }
  function shut() {
    panel.hidden = true;
    bubble.setAttribute("aria-expanded", "false");
    bubble.focus();
  }
  bubble.addEventListener("click", function () { if (panel.hidden) open(); else shut(); });
  close.addEventListener("click", shut);
  panel.addEventListener("keydown", function (e) { if (e.key === "Escape") shut(); });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit ? form.requestSubmit() : submit(e); }
  });

  // Shows the replies not shown yet (a poll and a POST may both bring the
  // same one: ids only grow, so anything at or below `after` was shown).
  function replies(answer) {
    var fresh = (answer.replies || []).filter(function (r) { return r.id > after; });
    fresh.forEach(function (r) {
      show("them", String(r.text));
      after = r.id;
    });
    save();
    return fresh.length;
  }

  // While the panel is open, a reply the owner writes from the console
  // shows up too.
  setInterval(function () {
    if (!token || panel.hidden || polling || send.disabled) return;
    fetch(api + "/api/chat/messages?token=" + encodeURIComponent(token) + "&after=" + after, { mode: "cors" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (b) { if (b) replies(b); })
      .catch(function () { /* next time */ });
  }, 15000);

  function errorText(response, body) {
    if (response.status === 429) {
      var wait = response.headers.get("Retry-After");
      return "Too many messages. Please wait " + (wait || "a few") + " seconds.";
    }
    return (body && body.error) || "Something went wrong; please try again.";
  }

  // The turn took longer than the server waits: ask for replies now and then.
  function poll() {
    if (polling) return;
    var tries = 0;
    polling = setInterval(function () {
      tries += 1;
      if (!token || tries > 60) { clearInterval(polling); polling = null; return; }
      fetch(api + "/api/chat/messages?token=" + encodeURIComponent(token) + "&after=" + after, { mode: "cors" })
        .then(function (r) { return r.json().then(function (b) { return { r: r, b: b }; }); })
        .then(function (x) {
          if (x.r.ok && replies(x.b) > 0) { clearInterval(polling); polling = null; }
        })
        .catch(function () { /* try again next tick */ });
    }, 3000);
  }

  // A random id per message, kept for its retries: the server stores a
  // message sent again (after an answer lost on the way) once, and answers
  // it as it did the first time.
  function messageId() {
    var bytes = new Uint8Array(16);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    var hex = "";
    for (var i = 0; i < bytes.length; i++) hex += ("0" + bytes[i].toString(16)).slice(-2);
    return hex;
  }

  // Sends again, with the same id, when the answer was lost (no network)
  // or a proxy in between failed; gives up after three tries.
  var RETRY_DELAYS = [1000, 3000];
  function later(ms) { return new Promise(function (done) { setTimeout(done, ms); }); }

  function post(text, retried, id, attempt) {
    attempt = attempt || 0;
    var body = { text: text, id: id };
    if (token) body.token = token; else if (business) body.business = business;
    var again = function () {
      return later(RETRY_DELAYS[attempt]).then(function () { return post(text, retried, id, attempt + 1); });
    };
    return fetch(api + "/api/chat/messages", {
      method: "POST", mode: "cors",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) {
      if ((r.status === 502 || r.status === 503 || r.status === 504) && attempt < RETRY_DELAYS.length) {
        return again();
      }
      return r.json().catch(function () { return {}; }).then(function (b) {
        if (r.status === 401 && token && !retried) {
          token = null; after = 0; save();
          return post(text, true, id, 0);
        }
        if (!r.ok) { show("note", errorText(r, b)); return; }
        token = b.token;
        if (replies(b) === 0) poll();
      });
    }, function (lost) {
      if (attempt < RETRY_DELAYS.length) return again();
      throw lost;
    });
  }

  function submit(e) {
    if (e) e.preventDefault();
    var text = input.value.trim();
    if (!text || send.disabled) return;
    input.value = "";
    show("me", text);
    send.disabled = true;
    send.setAttribute("aria-busy", "true");
    post(text, false, messageId(), 0)
      .catch(function () { show("note", "Could not reach us. Please check your connection and try again."); })
      .then(function () {
        send.disabled = false;
        send.removeAttribute("aria-busy");
        input.focus();
      });
  }
  form.addEventListener("submit", submit);
  if (token) poll();
})();
