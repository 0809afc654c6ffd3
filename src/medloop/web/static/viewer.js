/* Image viewer: wheel/pinch-free zoom, drag to pan, contrast and brightness, box drawing.
   window.medloopViewer(viewer, stage, img) -> controller. No dependencies.
   The stage is sized to the image's aspect ratio and centred in the viewer, so fractions
   of the stage (boxes) are fractions of the image. */
(function () {
  "use strict";
  window.medloopViewer = function (viewer, stage, img) {
    var state = { scale: 1, x: 0, y: 0, contrast: 100, brightness: 100 };
    var home = { x: 0, y: 0 };
    var boxMode = false, box = null, drag = null;
    var boxEl = stage.querySelector(".box");

    function fit() {
      var vw = viewer.clientWidth, vh = viewer.clientHeight;
      var iw = img.naturalWidth || vw, ih = img.naturalHeight || vh;
      var k = Math.min(vw / iw, vh / ih);
      stage.style.width = iw * k + "px";
      stage.style.height = ih * k + "px";
      home = { x: (vw - iw * k) / 2, y: (vh - ih * k) / 2 };
      state.scale = 1; state.x = home.x; state.y = home.y;
      apply();
    }
    function apply() {
      stage.style.transform = "translate(" + state.x + "px," + state.y + "px) scale(" + state.scale + ")";
      img.style.filter = "contrast(" + state.contrast + "%) brightness(" + state.brightness + "%)";
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
      if (!box) { boxEl.hidden = true; return; }
      boxEl.hidden = false;
      boxEl.style.left = box[0] * 100 + "%";
      boxEl.style.top = box[1] * 100 + "%";
      boxEl.style.width = box[2] * 100 + "%";
      boxEl.style.height = box[3] * 100 + "%";
    }
    viewer.addEventListener("wheel", function (event) {
      event.preventDefault();
      var rect = viewer.getBoundingClientRect();
      var px = event.clientX - rect.left, py = event.clientY - rect.top;
      var factor = event.deltaY < 0 ? 1.15 : 1 / 1.15;
      var scale = Math.min(20, Math.max(0.5, state.scale * factor));
      state.x = px - (px - state.x) * (scale / state.scale);
      state.y = py - (py - state.y) * (scale / state.scale);
      state.scale = scale;
      apply();
    }, { passive: false });
    viewer.addEventListener("pointerdown", function (event) {
      viewer.setPointerCapture(event.pointerId);
      if (boxMode) {
        var start = fraction(event);
        drag = { kind: "box", start: start };
        box = [start.x, start.y, 0, 0];
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
      } else {
        var p = fraction(event), s = drag.start;
        box = [Math.min(s.x, p.x), Math.min(s.y, p.y), Math.abs(p.x - s.x), Math.abs(p.y - s.y)];
        drawBox();
      }
    });
    viewer.addEventListener("pointerup", function () {
      if (drag && drag.kind === "box" && box && (box[2] < 0.01 || box[3] < 0.01)) {
        box = null;
        drawBox();
      }
      drag = null;
    });
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
      setBoxMode: function (on) { boxMode = on; viewer.classList.toggle("drawing", on); },
      boxMode: function () { return boxMode; },
      box: function () { return box ? box.map(function (v) { return Math.round(v * 1e4) / 1e4; }) : null; },
      clearBox: function () { box = null; drawBox(); }
    };
  };
})();
