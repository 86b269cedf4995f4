// acidic dashboard: refreshes the live part of a page (#live) without reloading it,
// and asks before the actions marked with data-confirm. Pages read fine without it.
(function () {
  "use strict";

  function bindConfirms(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      if (form.dataset.bound) return;
      form.dataset.bound = "1";
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }

  function start() {
    bindConfirms(document);
    var live = document.getElementById("live");
    if (!live) return;
    var every = Number(live.dataset.refresh || 0);
    if (!every) return;

    function stopped() {
      return live.querySelector("[data-live='0']") !== null;
    }

    function busy() {
      // Do not replace a form the user is filling in.
      var active = document.activeElement;
      return active !== null && active !== document.body && live.contains(active) &&
        active.closest("form") !== null;
    }

    function tick() {
      if (document.hidden || busy()) {
        window.setTimeout(tick, every);
        return;
      }
      fetch(window.location.href, {
        headers: { "X-Acidic-Live": "1" },
        credentials: "same-origin",
        cache: "no-store",
      })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (html) {
          var open = Array.prototype.map.call(
            live.querySelectorAll("details[open][id]"),
            function (d) { return d.id; }
          );
          live.innerHTML = html;
          open.forEach(function (id) {
            var d = document.getElementById(id);
            if (d) d.open = true;
          });
          bindConfirms(live);
          live.dataset.updated = String(Date.now());
        })
        .catch(function () { /* try again at the next tick */ })
        .then(function () {
          if (!stopped()) window.setTimeout(tick, every);
        });
    }

    if (!stopped()) window.setTimeout(tick, every);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
