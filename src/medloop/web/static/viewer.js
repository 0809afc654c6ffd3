/* Image viewer: zoom (buttons, wheel, + and - keys), pan (drag, arrow keys), contrast and
   brightness, and box drawing (drag, tap two corners, or arrow keys).
   window.medloopViewer(viewer, stage, img, {announce: fn(text)}) -> controller.
   No dependencies. The stage is sized to the image's aspect ratio and centred in the
   viewer, so fractions of the stage (boxes) are fractions of the image. */
(function () {
  "use strict";
  var ZOOM_STEP = 1.25, MIN_SCALE = 0.5, MAX_SCALE = 20;
  /* a drag shorter than this (a fraction of the image, each way) is a tap */
  var TAP = 0.01;
  /* a box placed by keyboard, and how far one arrow press moves or resizes it */
  var DEFAULT_BOX = [0.35, 0.35, 0.3, 0.3], KEY_STEP = 0.05, MIN_SIDE = 0.02;
  var HELP = "Image viewer. Plus and minus zoom, 0 fits the image, arrow keys pan. "
    + "In box mode the arrow keys move the box and Shift with the arrow keys resizes it; "
    + "with a pointer, drag across what you mean, or tap two opposite corners.";

  /* Where a box sits and how big it is, in words: "upper left, about a quarter of the image". */
  function describe(box) {
    var cx = box[0] + box[2] / 2, cy = box[1] + box[3] / 2;
    var row = cy < 1 / 3 ? "upper" : cy > 2 / 3 ? "lower" : "middle";
    var column = cx < 1 / 3 ? "left" : cx > 2 / 3 ? "right" : "centre";
    var where = row === "middle" && column === "centre" ? "centre" : row + " " + column;
    var area = box[2] * box[3];
    var sizes = [[0.9, "nearly all"], [0.75, "about three quarters"], [0.5, "about half"],
      [1 / 3, "about a third"], [0.25, "about a quarter"], [0.2, "about a fifth"],
      [0.1, "about a tenth"], [0.05, "about a twentieth"]];
    var size = "less than a twentieth";
    if (area >= 0.9) size = sizes[0][1];
    else if (area >= 0.035) {
      var best = sizes[1];
      sizes.slice(1).forEach(function (s) {
        if (Math.abs(Math.log(area / s[0])) < Math.abs(Math.log(area / best[0]))) best = s;
      });
      size = best[1];
    }
    return where + ", " + size + " of the image";
  }

  window.medloopViewer = function (viewer, stage, img, options) {
    var announce = (options && options.announce) || function () {};
    var state = { scale: 1, x: 0, y: 0, contrast: 100, brightness: 100 };
    var home = { x: 0, y: 0 };
    var boxMode = false, box = null, drag = null, corner = null;
    var boxEl = stage.querySelector("#box");  /* the box being drawn (not the review page's crowd boxes) */

    /* a group with a name and its instructions, and zoom buttons a phone can press */
    viewer.setAttribute("role", "group");
    viewer.setAttribute("aria-label", "Image viewer");
    var help = document.createElement("span");
    help.id = viewer.id + "-help";
    help.className = "sr-only";
    help.textContent = HELP;
    viewer.appendChild(help);
    viewer.setAttribute("aria-describedby", help.id);
    var bar = document.createElement("div");
    bar.className = "zoom-bar";
    [["Zoom in", function () { zoomBy(ZOOM_STEP); }],
      ["Zoom out", function () { zoomBy(1 / ZOOM_STEP); }],
      ["Fit", fitView]].forEach(function (spec) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = spec[0];
      button.addEventListener("click", spec[1]);
      bar.appendChild(button);
    });
    viewer.appendChild(bar);

    function fit() {
      var vw = viewer.clientWidth, vh = viewer.clientHeight;
      var iw = img.naturalWidth || vw, ih = img.naturalHeight || vh;
      var k = Math.min(vw / iw, vh / ih);
      stage.style.width = iw * k + "px";
      stage.style.height = ih * k + "px";
      home = { x: (vw - iw * k) / 2, y: (vh - ih * k) / 2 };
      fitView();
    }
    function fitView() { state.scale = 1; state.x = home.x; state.y = home.y; apply(); }
    function apply() {
      stage.style.transform = "translate(" + state.x + "px," + state.y + "px) scale(" + state.scale + ")";
      img.style.filter = "contrast(" + state.contrast + "%) brightness(" + state.brightness + "%)";
    }
    /* zoom by `factor` about a point of the viewer (its centre unless given) */
    function zoomBy(factor, px, py) {
      if (px === undefined) { px = viewer.clientWidth / 2; py = viewer.clientHeight / 2; }
      var scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, state.scale * factor));
      state.x = px - (px - state.x) * (scale / state.scale);
      state.y = py - (py - state.y) * (scale / state.scale);
      state.scale = scale;
      apply();
    }
    function fraction(event) {
      var rect = stage.getBoundingClientRect();
      return {
        x: Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width)),
        y: Math.min(1, Math.max(0, (event.clientY - rect.top) / rect.height))
      };
    }
    function drawBox() {
      if (!boxEl) return;
      boxEl.classList.toggle("corner", !box && !!corner);
      if (!box && corner) {  /* the first of two tapped corners */
        boxEl.hidden = false;
        boxEl.style.left = corner.x * 100 + "%";
        boxEl.style.top = corner.y * 100 + "%";
        boxEl.style.width = boxEl.style.height = "0";
        return;
      }
      if (!box) { boxEl.hidden = true; return; }
      boxEl.hidden = false;
      boxEl.style.left = box[0] * 100 + "%";
      boxEl.style.top = box[1] * 100 + "%";
      boxEl.style.width = box[2] * 100 + "%";
      boxEl.style.height = box[3] * 100 + "%";
    }
    function between(a, b) {
      return [Math.min(a.x, b.x), Math.min(a.y, b.y), Math.abs(b.x - a.x), Math.abs(b.y - a.y)];
    }
    function tiny(b) { return b[2] < TAP && b[3] < TAP; }
    function drawn() { drawBox(); announce("Box drawn: " + describe(box) + "."); }

    viewer.addEventListener("wheel", function (event) {
      event.preventDefault();
      var rect = viewer.getBoundingClientRect();
      zoomBy(event.deltaY < 0 ? 1.15 : 1 / 1.15, event.clientX - rect.left, event.clientY - rect.top);
    }, { passive: false });
    viewer.addEventListener("pointerdown", function (event) {
      if (bar.contains(event.target)) return;
      viewer.setPointerCapture(event.pointerId);
      if (boxMode) {
        drag = { kind: "box", start: fraction(event), before: box };
      } else {
        drag = { kind: "pan", x: event.clientX - state.x, y: event.clientY - state.y };
      }
    });
    viewer.addEventListener("pointermove", function (event) {
      if (!drag) return;
      if (drag.kind === "pan") {
        state.x = event.clientX - drag.x;
        state.y = event.clientY - drag.y;
        apply();
        return;
      }
      var moved = between(drag.start, fraction(event));
      if (tiny(moved) && !drag.moved) return;  /* still a tap */
      drag.moved = true;
      corner = null;
      box = moved;
      drawBox();
    });
    viewer.addEventListener("pointerup", function (event) {
      var was = drag;
      drag = null;
      if (!was || was.kind !== "box") return;
      var end = fraction(event);
      if (was.moved && !tiny(between(was.start, end))) { box = between(was.start, end); drawn(); return; }
      if (was.moved) { box = was.before; drawBox(); return; }
      /* a tap: the first corner, or the second one that completes the box */
      if (!corner) {
        corner = end;
        box = null;
        drawBox();
        announce("First corner set. Tap the opposite corner of the box.");
        return;
      }
      var tapped = between(corner, end);
      corner = null;
      if (tiny(tapped)) { box = null; drawBox(); announce("Box removed: tap two different corners."); return; }
      box = tapped;
      drawn();
    });
    /* the browser took the touch over (a scroll or a gesture): no half-drawn box stays */
    viewer.addEventListener("pointercancel", function () {
      var was = drag;
      drag = null;
      if (!was || was.kind !== "box") return;
      box = was.before;
      corner = null;
      drawBox();
      announce("The box was not drawn (the drag was interrupted). Drag again, or tap two opposite corners.");
    });

    /* keys while the viewer has the focus (a focused control, not page-wide shortcuts) */
    var ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    viewer.addEventListener("keydown", function (event) {
      if (event.target !== viewer || event.ctrlKey || event.metaKey || event.altKey) return;
      var key = event.key, arrow = ARROWS[key];
      if (key === "+" || key === "=") zoomBy(ZOOM_STEP);
      else if (key === "-" || key === "_") zoomBy(1 / ZOOM_STEP);
      else if (key === "0") fitView();
      else if (arrow && boxMode) moveBox(arrow, event.shiftKey);
      else if (arrow) {
        state.x -= arrow[0] * viewer.clientWidth / 10;
        state.y -= arrow[1] * viewer.clientHeight / 10;
        apply();
      } else return;
      event.preventDefault();
      event.stopPropagation();  /* the page's own single-key shortcuts stay out of it */
    });
    /* Arrow keys in box mode: a box appears in the centre, then arrows move it and
       Shift+arrows resize it (right and down grow it), always inside the image. */
    function moveBox(arrow, resize) {
      corner = null;
      if (!box) { box = DEFAULT_BOX.slice(); drawn(); return; }
      var b = box.slice();
      if (resize) {
        b[2] = Math.min(1 - b[0], Math.max(MIN_SIDE, b[2] + arrow[0] * KEY_STEP));
        b[3] = Math.min(1 - b[1], Math.max(MIN_SIDE, b[3] + arrow[1] * KEY_STEP));
      } else {
        b[0] = Math.min(1 - b[2], Math.max(0, b[0] + arrow[0] * KEY_STEP));
        b[1] = Math.min(1 - b[3], Math.max(0, b[1] + arrow[1] * KEY_STEP));
      }
      box = b;
      drawn();
    }

    img.addEventListener("load", fit);
    window.addEventListener("resize", fit);
    fit();
    return {
      reset: function () {
        state.contrast = 100; state.brightness = 100;
        fit();
      },
      setFilter: function (contrast, brightness) {
        state.contrast = contrast; state.brightness = brightness; apply();
      },
      setBoxMode: function (on) {
        boxMode = on;
        corner = null;
        drawBox();
        viewer.classList.toggle("drawing", on);
      },
      boxMode: function () { return boxMode; },
      box: function () { return box ? box.map(function (v) { return Math.round(v * 1e4) / 1e4; }) : null; },
      setBox: function (next) { box = next ? next.slice() : null; corner = null; drawBox(); },
      clearBox: function () { box = null; corner = null; drawBox(); }
    };
  };
})();
