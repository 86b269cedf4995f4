// acidic dashboard: refreshes the live part of a page (#live) without reloading it,
// asks before the actions marked with data-confirm, and runs a confirmed bulk action
// step by step with a progress bar. Pages read and act fine without it.
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

  function offline(down) {
    var banner = document.getElementById("offline");
    if (banner) banner.hidden = !down;
  }

  // A bulk action: POST one step after another (each acts on the runs it has time
  // for and says where it stopped) until the server says it is finished.
  function bindBulk() {
    var form = document.querySelector("form[data-bulk]");
    if (!form) return;
    var box = document.getElementById("bulk");
    var total = Number(box.dataset.total || 0);
    var doing = box.dataset.doing || "";
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = form.querySelector("button");
      button.disabled = true;
      var progress = document.getElementById("bulk-progress");
      var bar = progress.querySelector("progress");
      var status = document.getElementById("bulk-status");
      var list = document.getElementById("bulk-skipped");
      progress.hidden = false;
      var done = 0, skipped = 0, after = "0";

      function show(finished) {
        bar.value = done + skipped;
        status.textContent = (finished ? "Done: " : doing + "… ") + done + " of " + total +
          " run(s) done" + (skipped ? ", " + skipped + " skipped" : "") + ".";
        if (finished) status.dataset.finished = "1";
      }

      function step() {
        var data = new URLSearchParams(new FormData(form));
        data.set("after", after);
        // form.action would be the input named "action", not the URL.
        fetch(form.getAttribute("action"), {
          method: "POST",
          body: data,
          headers: { "X-Acidic-Bulk": "1" },
          credentials: "same-origin",
        })
          .then(function (response) {
            return response.json().then(function (body) {
              if (!response.ok) throw new Error(body.error || ("HTTP " + response.status));
              return body;
            });
          })
          .then(function (body) {
            done += body.done;
            skipped += body.skipped_count;
            after = String(body.after);
            body.skipped.forEach(function (s) {
              var item = document.createElement("li");
              item.textContent = s.key + ": " + s.reason;
              list.appendChild(item);
            });
            show(body.finished);
            if (!body.finished) step();
          })
          .catch(function (error) {
            status.textContent = "Stopped after " + done + " run(s): " + error.message +
              ". Press the button to carry on.";
            button.disabled = false;
            form.querySelector("input[name=after]").value = after;
          });
      }
      show(false);
      step();
    });
  }

  function start() {
    bindConfirms(document);
    bindBulk();
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

    if (live.dataset.reload) {
      // The "database unreachable" page: reload once the page answers again.
      var retry = function () {
        fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
          .then(function (response) {
            if (response.status !== 503) window.location.reload();
            else window.setTimeout(retry, every);
          })
          .catch(function () { window.setTimeout(retry, every); });
      };
      window.setTimeout(retry, every);
      return;
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
          offline(response.status === 503);
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
