// jobledger console: small progressive enhancements. Every page works without this file.
// - relative times ("4 min ago") keep up with the clock;
// - copy buttons for ids;
// - live refresh (?refresh=N) fetches the page again and swaps its content in place,
//   keeping the scroll position and any open <details>.
(function () {
  "use strict";

  function span(seconds) {
    seconds = Math.floor(Math.abs(seconds));
    if (seconds < 60) return seconds + " s";
    var minutes = Math.floor(seconds / 60), hours = Math.floor(seconds / 3600);
    var days = Math.floor(seconds / 86400);
    if (minutes < 60) return minutes + " min";
    if (hours < 24) return minutes % 60 ? hours + " h " + (minutes % 60) + " min" : hours + " h";
    return hours % 24 ? days + " d " + (hours % 24) + " h" : days + " d";
  }

  function ago(stamp) {
    var then = Date.parse(stamp);
    if (isNaN(then)) return null;
    var delta = (Date.now() - then) / 1000;
    if (Math.abs(delta) < 10) return "just now";
    return delta > 0 ? span(delta) + " ago" : "in " + span(delta);
  }

  function updateTimes(root) {
    root.querySelectorAll("time[data-rel]").forEach(function (el) {
      var text = ago(el.getAttribute("datetime"));
      if (text && el.textContent !== text) el.textContent = text;
    });
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } finally { document.body.removeChild(area); }
    return Promise.resolve();
  }

  function enableCopy(root) {
    root.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
      button.hidden = false;
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy[data-copy]");
    if (!button) return;
    copyText(button.getAttribute("data-copy")).then(function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    });
  });

  function openDetails() {
    var open = [];
    document.querySelectorAll("main details").forEach(function (d, i) { if (d.open) open.push(i); });
    return open;
  }

  function refresh() {
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
        var main = document.querySelector("main");
        if (!fresh || !main) return;
        var x = window.scrollX, y = window.scrollY, open = openDetails();
        main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes));
        document.querySelectorAll("main details").forEach(function (d, i) {
          if (open.indexOf(i) >= 0) d.open = true;
        });
        enableCopy(main);
        updateTimes(main);
        window.scrollTo(x, y);
      })
      .catch(function () { /* offline for a moment: the next tick tries again */ });
  }

  function start() {
    enableCopy(document);
    updateTimes(document);
    setInterval(function () { updateTimes(document); }, 15000);
    var every = parseInt(document.body.getAttribute("data-refresh") || "", 10);
    if (every > 0) setInterval(refresh, every * 1000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
