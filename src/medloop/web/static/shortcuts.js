/* Single-key shortcuts can be turned off (WCAG 2.1.4): a stray key must not skip an
   image or pick a label for someone who types by voice or trembles.
   window.medloopShortcuts(holder) adds a "Keyboard shortcuts" switch to `holder` and
   returns a function that says whether they are on. On by default; the choice is kept
   in this browser (localStorage) for every page. */
(function () {
  "use strict";
  var KEY = "medloop-shortcuts";

  function stored() {
    try { return window.localStorage.getItem(KEY) !== "off"; } catch (error) { return true; }
  }

  window.medloopShortcuts = function (holder) {
    var label = document.createElement("label");
    label.className = "shortcuts-switch";
    var box = document.createElement("input");
    box.type = "checkbox";
    box.id = "shortcuts";
    box.checked = stored();
    box.addEventListener("change", function () {
      try { window.localStorage.setItem(KEY, box.checked ? "on" : "off"); } catch (error) { /* private mode */ }
    });
    label.appendChild(box);
    label.appendChild(document.createTextNode(" Keyboard shortcuts (single keys)"));
    holder.appendChild(label);
    return function () { return box.checked; };
  };
})();
