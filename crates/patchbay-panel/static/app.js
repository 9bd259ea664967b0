// Patchbay admin panel: the only script, for the live parts. Every page works
// without it; it adds the live tail of the operation-log timeline.
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
