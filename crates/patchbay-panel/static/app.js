// Patchbay admin panel: the only script, for the live parts. Every page works
// without it; it adds the live tail of the operation-log timeline and the live
// figures of a running data-sync import.
(function () {
  "use strict";
  var timeline = document.querySelector("[data-stream]");
  if (!timeline || !window.EventSource) { return; }
  var status = document.querySelector("[data-live]");
  var showing = document.querySelector("[data-showing]");
  var locale = document.documentElement.lang || undefined;
  function setState(state, text) {
    if (!status) { return; }
    status.setAttribute("data-state", state);
    status.textContent = text;
  }
  var source = new EventSource(timeline.getAttribute("data-stream"));
  source.addEventListener("open", function () { setState("on", status ? status.getAttribute("data-on") : ""); });
  source.addEventListener("error", function () { setState("off", status ? status.getAttribute("data-off") : ""); });
  source.addEventListener("entry", function (event) {
    // The server sends each entry already rendered and escaped.
    var holder = document.createElement("ul");
    holder.innerHTML = event.data;
    var item = holder.firstElementChild;
    if (!item) { return; }
    item.classList.add("new");
    var empty = document.querySelector("[data-empty]");
    if (empty) { empty.remove(); }
    timeline.insertBefore(item, timeline.firstChild);
    if (showing) {
      // Page one grows at the top: one more shown, one more in all.
      var to = parseInt(showing.getAttribute("data-to"), 10) + 1;
      var total = parseInt(showing.getAttribute("data-total"), 10) + 1;
      showing.setAttribute("data-to", String(to));
      showing.setAttribute("data-total", String(total));
      showing.textContent = showing.getAttribute("data-template")
        .replace("{to}", to.toLocaleString(locale))
        .replace("{total}", total.toLocaleString(locale));
    }
  });
})();

// A data-sync run's page: its figures while it is active. The server sends
// them formatted for the page's language as a `run` event (JSON) whenever they
// change; the last one says the run is no longer active.
(function () {
  "use strict";
  var run = document.querySelector("[data-live-run]");
  if (!run || !window.EventSource) { return; }
  var status = run.querySelector("[data-live]");
  function setState(state) {
    if (!status) { return; }
    status.setAttribute("data-state", state);
    status.textContent = status.getAttribute(state === "on" ? "data-on" : "data-off");
  }
  // Replaces an element's content with one child holding `text`.
  function put(css, tag, text, attr, value) {
    var holder = run.querySelector(css);
    if (!holder || text === null || text === undefined) { return; }
    var child = document.createElement(tag);
    child.textContent = text;
    if (attr) { child.setAttribute(attr, value); }
    holder.textContent = "";
    holder.appendChild(child);
  }
  var source = new EventSource(run.getAttribute("data-live-run"));
  source.addEventListener("open", function () { setState("on"); });
  source.addEventListener("error", function () { setState("off"); });
  source.addEventListener("run", function (event) {
    var data;
    try { data = JSON.parse(event.data); } catch (e) { return; }
    var counters = data.counters || {};
    Object.keys(counters).forEach(function (name) {
      var figure = run.querySelector("[data-counter='" + name + "']");
      if (!figure || figure.textContent === counters[name]) { return; }
      figure.textContent = counters[name];
      var box = figure.closest("[data-counter-box]");
      if (box) {
        // Restarts the highlight.
        box.classList.remove("changed");
        void box.offsetWidth;
        box.classList.add("changed");
      }
    });
    var badge = run.querySelector(".head [data-run-status]");
    if (badge) {
      badge.className = "badge badge-" + data.status;
      badge.setAttribute("data-run-status", data.status);
      badge.textContent = data.statusLabel;
    }
    put("[data-run-started]", "time", data.startedAt);
    put("[data-run-finished]", "time", data.finishedAt);
    if (data.duration) { run.querySelector("[data-run-duration]").textContent = data.duration; }
    put("[data-run-cursor-end]", "code", data.cursorEnd);
    var error = run.querySelector("[data-run-error]");
    if (error && data.error) {
      error.querySelector("[data-run-error-text]").textContent = data.error;
      error.hidden = false;
    }
    if (!data.active) {
      // Finished: nothing more will change, and nothing is left to cancel.
      source.close();
      if (status) { status.hidden = true; }
      ["[data-run-cancel]", "[data-cancel-requested]"].forEach(function (css) {
        var gone = run.querySelector(css);
        if (gone) { gone.remove(); }
      });
      var started = document.querySelector("[data-notice=sync_started]");
      if (started) { started.remove(); }
      run.setAttribute("data-finished", data.status);
    }
  });
})();
