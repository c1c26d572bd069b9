// Portcullis dashboard: only what needs a script. Every page works
// without it; this adds the live overview and auto-submitting filters.
"use strict";
(function () {
  // Filters: a changed select submits the form (text fields submit on Enter).
  var filters = document.getElementById("filters");
  if (filters) {
    filters.addEventListener("change", function (e) {
      if (e.target && e.target.tagName === "SELECT") {
        filters.requestSubmit ? filters.requestSubmit() : filters.submit();
      }
    });
  }

  // Live overview: verdict events from /ui/events move the counts and
  // prepend the change; text only, never markup from the stream.
  var counts = document.getElementById("verdict-counts");
  var recent = document.querySelector("#recent-changes tbody");
  if (!counts || !recent || !window.EventSource) {
    return;
  }
  var verdicts = ["allow", "warn", "block", "pending"];
  function bump(verdict, by) {
    if (verdicts.indexOf(verdict) < 0) {
      return;
    }
    var el = counts.querySelector('[data-verdict="' + verdict + '"] .count');
    if (el) {
      var n = parseInt(el.textContent, 10) || 0;
      el.textContent = String(Math.max(0, n + by));
    }
  }
  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text;
    return td;
  }
  function badge(verdict) {
    var td = document.createElement("td");
    var span = document.createElement("span");
    span.className = "verdict verdict-" + (verdicts.indexOf(verdict) >= 0 ? verdict : "pending");
    span.textContent = verdict;
    td.appendChild(span);
    return td;
  }
  var source = new EventSource("/ui/events");
  source.onopen = function () {
    document.body.dataset.live = "on";
  };
  source.addEventListener("verdict", function (msg) {
    var e;
    try {
      e = JSON.parse(msg.data);
    } catch (err) {
      return;
    }
    if (!e || typeof e.digest !== "string") {
      return;
    }
    if (e.from) {
      bump(e.from, -1);
    }
    bump(e.to, +1);
    var tr = document.createElement("tr");
    tr.dataset.digest = e.digest;
    tr.appendChild(cell(new Date(e.at).toISOString().replace("T", " ").slice(0, 19) + " UTC"));
    var td = document.createElement("td");
    var a = document.createElement("a");
    var where = (e.upstream || "") + "/" + (e.repository || "");
    a.href = "/ui/images/" + encodeURIComponent(e.digest) + (e.upstream ? "?repository=" + encodeURIComponent(where) : "");
    a.textContent = (e.image || where).slice(0, 300);
    td.appendChild(a);
    tr.appendChild(td);
    tr.appendChild(e.from ? badge(e.from) : cell("new"));
    tr.appendChild(badge(e.to || "pending"));
    tr.appendChild(cell((e.reasons || []).join(", ").slice(0, 300)));
    recent.insertBefore(tr, recent.firstChild);
    while (recent.children.length > 50) {
      recent.removeChild(recent.lastChild);
    }
  });
  source.onerror = function () {
    document.body.dataset.live = "off";
  };
})();
