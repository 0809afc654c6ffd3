/* Every page: a region htmx refreshes on a timer (the review queue, a job's progress)
   - is not replaced while it holds the keyboard focus, so keyboard and screen-reader
     users keep their place; it refreshes on the next tick after focus leaves it;
   - marks its requests as polling (X-Medloop-Poll): the server does not count them as
     use of the session, so a page left alone cannot keep itself signed in. */
(function () {
  "use strict";
  function polled(region) {
    return (region.getAttribute("hx-trigger") || "").indexOf("every") === 0;
  }
  document.addEventListener("htmx:configRequest", function (event) {
    if (polled(event.detail.elt)) event.detail.headers["X-Medloop-Poll"] = "1";
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    var region = event.detail.elt;
    if (polled(region) && region.contains(document.activeElement)) event.preventDefault();
  });
})();
