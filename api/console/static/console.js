// Times arrive in UTC (<time datetime>); people read them in their own time zone, UTC on hover.
(function () {
  "use strict";
  var local = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
    timeZoneName: "short"
  });

  function localize(root) {
    (root || document).querySelectorAll("time[datetime]:not([data-local])").forEach(function (el) {
      var at = new Date(el.getAttribute("datetime"));
      if (isNaN(at)) { return; }
      el.textContent = local.format(at);
      el.setAttribute("data-local", "1");
    });
  }

  document.addEventListener("DOMContentLoaded", function () { localize(document); });
  document.addEventListener("htmx:afterSettle", function (event) { localize(event.target); });
  document.addEventListener("htmx:sseMessage", function (event) { localize(event.target); });

  // A refusal (403) or a mistake (4xx) is shown where the server says, not dropped as htmx does by default.
  document.addEventListener("DOMContentLoaded", function () {
    if (window.htmx) {
      htmx.config.responseHandling = [
        {code: "204", swap: false},
        {code: "[23]..", swap: true},
        {code: "4..", swap: true, error: true},
        {code: "...", swap: false, error: true}
      ];
    }
  });
})();
