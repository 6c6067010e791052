// Progressive enhancement only: every page works without this script.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Put the cursor where the page's first job is (the till's scan field).
  var first = document.querySelector("[data-autofocus]");
  if (first) first.focus();
  // A form sent once is not sent twice by a double click.
  document.querySelectorAll("form").forEach(function (f) {
    f.addEventListener("submit", function () {
      setTimeout(function () {
        f.querySelectorAll("button[type=submit], button:not([type])").forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  });
});
