/* Every page: a region htmx refreshes on a timer (the review queue) is not replaced
   while it holds the keyboard focus, so keyboard and screen-reader users keep their
   place; it refreshes on the next tick after focus leaves it. */
(function () {
  "use strict";
  document.addEventListener("htmx:beforeRequest", function (event) {
    var region = event.detail.elt;
    var polled = (region.getAttribute("hx-trigger") || "").indexOf("every") === 0;
    if (polled && region.contains(document.activeElement)) event.preventDefault();
  });
})();
