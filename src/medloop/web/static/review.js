/* Review page: zoom/pan viewer and number keys for the decision buttons. */
(function () {
  "use strict";
  var viewer = window.medloopViewer(document.getElementById("viewer"),
    document.getElementById("stage"), document.getElementById("image"));
  document.addEventListener("keydown", function (event) {
    if (event.target.tagName === "INPUT" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "r" || event.key === "R") { viewer.reset(); return; }
    var button = document.querySelector('button[data-key="' + event.key + '"]');
    if (button) button.click();
  });
})();
