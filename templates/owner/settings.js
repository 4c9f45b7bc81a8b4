// The settings page, enhanced: counts unsaved fields and characters, and
// refreshes the assembled prompt as the owner types. Without this script
// the page works the same through its Preview, Try it and Save buttons.
(function () {
  "use strict";
  var form = document.getElementById("settings-form");
  if (!form) { return; }
  var unsaved = document.getElementById("unsaved");
  var prompt = document.getElementById("assembled-prompt");

  function changedFields() {
    var count = 0;
    var radios = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (el.type === "radio") {
        radios[el.name] = radios[el.name] || false;
        if (el.checked !== el.hasAttribute("data-saved")) { radios[el.name] = true; }
      } else if (el.hasAttribute && el.hasAttribute("data-saved")) {
        if (el.value.trim() !== el.getAttribute("data-saved").trim()) { count += 1; }
      }
    });
    Object.keys(radios).forEach(function (name) { if (radios[name]) { count += 1; } });
    return count;
  }

  function updateCounts() {
    var n = changedFields();
    unsaved.textContent = n === 1 ? "1 unsaved field" : n + " unsaved fields";
    unsaved.setAttribute("data-unsaved", String(n));
    Array.prototype.forEach.call(document.querySelectorAll("[data-count]"), function (span) {
      var field = document.getElementById(span.getAttribute("data-count"));
      if (field) { span.textContent = Array.from(field.value).length + " characters"; }
    });
  }

  var timer = null;
  var sent = 0;
  function refreshPrompt() {
    var body = new URLSearchParams();
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.name === "sample") { return; }
      if (el.type === "radio" && !el.checked) { return; }
      body.append(el.name, el.value);
    });
    var mine = ++sent;
    fetch("/owner/settings/preview?fragment=1", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: body.toString()
    }).then(function (response) { return response.text(); })
      .then(function (html) { if (mine === sent) { prompt.innerHTML = html; } })
      .catch(function () { /* the Preview button still works */ });
  }

  function changed() {
    updateCounts();
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(refreshPrompt, 250);
  }

  form.addEventListener("input", function (e) { if (e.target.name !== "sample") { changed(); } });
  form.addEventListener("change", function (e) { if (e.target.name !== "sample") { changed(); } });
  updateCounts();
})();
