// hostplane console, an instance's page: its status, history, endpoint and logs follow the
// instance without a reload, polling status.json until the status settles.
(function () {
  var live = document.getElementById("live");
  if (!live) return;
  var url = live.getAttribute("data-status-url");
  var settled = live.getAttribute("data-settled").split(" ");
  var EVERY_MS = 1500;

  function text(id, value) {
    var node = document.getElementById(id);
    if (node) node.textContent = value;
  }

  function time(at) {
    return at.slice(0, 19).replace("T", " ") + " UTC";
  }

  function show(data) {
    text("status", data.status);
    text("status-reason", data.status_reason || "");
    text("endpoint", data.endpoint_url || "—");
    var history = document.getElementById("history");
    history.replaceChildren.apply(history, (data.history || []).map(function (h) {
      var item = document.createElement("li");
      var status = document.createElement("span");
      status.className = "h-status";
      status.textContent = h.status;
      item.append(status, " at " + time(h.at) + (h.reason ? ": " + h.reason : ""));
      return item;
    }));
    text("logs", data.logs.map(function (line) {
      return line.at.slice(11, 19) + " " + line.message + "\n";
    }).join(""));
    text("logs-error", data.logs_error || "");
    var test = document.querySelector("#test button");
    if (test) test.disabled = data.status !== "running";
    if (data.status === "destroyed") {  // destroyed elsewhere: nothing left to test or destroy
      document.querySelectorAll("#test, #destroy").forEach(function (form) { form.hidden = true; });
    }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.status === 401 || r.status === 404) {
          text("status-reason", "(no longer updated: reload the page)");
          return;
        }
        if (!r.ok) throw new Error(String(r.status));
        return r.json().then(function (data) {
          show(data);
          if (!data.settled) window.setTimeout(poll, EVERY_MS);
        });
      })
      .catch(function () { window.setTimeout(poll, EVERY_MS * 4); });  // try again, slower
  }

  if (settled.indexOf(document.getElementById("status").textContent.trim()) < 0) {
    window.setTimeout(poll, EVERY_MS);
  }
})();
