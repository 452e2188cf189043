// pullgate admin: live updates. The server renders every part of the
// page; on each server-sent event this fetches the live part again.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var conn = document.getElementById("conn");
  var timer = null;
  var busy = false;

  function setConn(text, cls) {
    conn.textContent = text;
    conn.className = "badge " + cls;
  }

  function refresh() {
    if (timer !== null) return;
    timer = setTimeout(function () {
      timer = null;
      if (busy) { refresh(); return; }
      busy = true;
      fetch("/admin/live", { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) { live.innerHTML = html; live.dataset.updated = String(Date.now()); })
        .catch(function () { setConn("update failed", "bad"); })
        .then(function () { busy = false; });
    }, 150);
  }

  if (window.EventSource) {
    var es = new EventSource("/admin/api/stream");
    es.addEventListener("hello", function () { setConn("live", "ok"); refresh(); });
    ["pull", "override", "tick"].forEach(function (name) {
      es.addEventListener(name, refresh);
    });
    es.onerror = function () { setConn("reconnecting…", "warn"); };
  }

  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  });
})();
