/* Review page: zoom/pan viewer with contrast and brightness, number keys for the decision buttons (a final label
   cannot be undone: the first press picks a button, the same key again or Enter signs
   it, Esc lets go), G toggles the Grad-CAM overlay (fetched on first use), F goes to
   the flag reason. A "Keyboard shortcuts" switch at the foot of the panel turns these
   single keys off. */
(function () {
  "use strict";
  var viewer = window.medloopViewer(document.getElementById("viewer"),
    document.getElementById("stage"), document.getElementById("image"));
  var overlay = document.getElementById("gradcam");
  var toggle = document.getElementById("gradcam-toggle");
  var choice = document.getElementById("gradcam-class");
  var status = document.getElementById("gradcam-status");
  var switchHolder = document.createElement("p");
  switchHolder.className = "hint";
  document.querySelector(".panel").appendChild(switchHolder);
  var shortcutsOn = window.medloopShortcuts(switchHolder);

  function overlayUrl() {
    var base = overlay.getAttribute("data-src");
    return choice && choice.value ? base + "?label=" + encodeURIComponent(choice.value) : base;
  }
  function showOverlay(on) {
    if (!overlay) return;
    if (on) {
      var url = overlayUrl();
      if (overlay.getAttribute("src") !== url) {
        status.textContent = "computing the overlay…";
        overlay.setAttribute("src", url);
      }
    }
    overlay.hidden = !on;
    toggle.setAttribute("aria-pressed", on ? "true" : "false");
    toggle.lastChild.textContent = on ? " Hide overlay" : " Show overlay";
  }
  if (overlay) {
    overlay.addEventListener("load", function () { status.textContent = ""; });
    overlay.addEventListener("error", function () {
      status.textContent = "the overlay is not available for this item";
      showOverlay(false);
      overlay.removeAttribute("src");
    });
    toggle.addEventListener("click", function () { showOverlay(overlay.hidden); });
    choice.addEventListener("change", function () { showOverlay(true); });
  }

  /* contrast and brightness (windowing) and the image's stored size: a small image is
     shown enlarged, pixel for pixel, never with more detail than it holds */
  var contrast = document.getElementById("contrast");
  var brightness = document.getElementById("brightness");
  var image = document.getElementById("image");
  function filters() { viewer.setFilter(+contrast.value, +brightness.value); }
  function resetView() { contrast.value = 100; brightness.value = 100; viewer.reset(); }
  function imageSize() {
    document.getElementById("image-size").textContent = "Image " + image.naturalWidth
      + " \u00d7 " + image.naturalHeight + " pixels as stored; zoom enlarges those pixels.";
  }
  contrast.addEventListener("input", filters);
  brightness.addEventListener("input", filters);
  document.getElementById("reset-view").addEventListener("click", resetView);
  if (image.complete && image.naturalWidth) imageSize(); else image.addEventListener("load", imageSize);

  var hint = document.getElementById("decision-hint");
  var armed = null;
  function arm(button) {
    if (armed) armed.classList.remove("armed");
    armed = button;
    if (!button) {  /* and off the button: Enter or Space must not sign it after Esc */
      hint.textContent = "";
      if (document.activeElement && document.activeElement.blur) document.activeElement.blur();
      return;
    }
    button.classList.add("armed");
    button.focus();
    hint.textContent = "Press " + button.getAttribute("data-key") + " again or Enter to sign \u201c"
      + button.value + "\u201d as the final label; Esc to choose again.";
  }

  document.addEventListener("keydown", function (event) {
    if (!shortcutsOn()) return;
    var tag = event.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.repeat) return;  /* a held key is one press: it must not arm and then sign */
    if (event.key === "r" || event.key === "R") { resetView(); return; }
    if ((event.key === "g" || event.key === "G") && toggle) { toggle.click(); return; }
    if (event.key === "f" || event.key === "F") {
      var reason = document.getElementById("flag-reason");
      if (reason) { event.preventDefault(); reason.focus(); }
      return;
    }
    if (event.key === "Escape" && armed) { arm(null); return; }
    var button = document.querySelector('button[data-key="' + event.key + '"]');
    if (!button) return;
    if (button === armed) button.click(); else arm(button);
  });
})();
