/* Every signed-in page: a browser left without a key press, click or touch for the
   deployment's idle time (MEDLOOP_IDLE_SIGN_OUT_MINUTES) signs its session out through the
   header's sign-out form, which revokes the session on the server, and comes back to this
   page after the next sign-in. Activity in any tab of the browser counts for all of them
   (localStorage), and the last minute is announced with a button to stay signed in.
   Polling (the review queue, a job's progress) is not activity: a page refreshing itself
   on an unattended ward computer must not keep it signed in.
   The server signs an idle session out too (a browser without this script, a laptop
   closed): use that sends no request is reported to it, at most every half minute and
   at the latest half a minute after it, so the server never signs out before the page. */
(function () {
  "use strict";
  var form = document.getElementById("sign-out");
  var minutes = form ? parseFloat(form.getAttribute("data-idle-minutes")) : 0;
  if (!(minutes > 0)) return;
  var KEY = "medloop.lastActivity";
  var OUT = "medloop.signedOutAt";  /* when a tab of this browser last signed it out */
  var SIGN_IN_PAGE = "medloop.signInPageAt";  /* when a tab last opened the sign-in page */
  var LOCK = "medloop.signOut";  /* held by the tab signing the browser out */
  var loadedAt = Date.now();
  var limit = minutes * 60000;
  var warnFor = Math.min(60000, limit / 4);
  var last = Date.now();
  var written = 0;
  var warning = null;
  var focused = null;  /* what had the keyboard before the warning took it */
  var leaving = false;
  var REPORT_EVERY = Math.min(30000, limit / 4);
  var reported = Date.now();  /* loading this page was a request: the server counted it */
  var reportDue = null;  /* the next report, waiting for REPORT_EVERY to pass */
  var csrf = document.querySelector('meta[name="csrf-token"]').content;

  /* A time another tab of this browser stored under `key` (0: none, or no storage). */
  function stored(key) {
    try { return parseInt(window.localStorage.getItem(key) || "0", 10) || 0; } catch (e) { return 0; }
  }
  function active() {
    last = Date.now();
    if (last - written > 1000) {  /* at most one write a second, for the other tabs */
      written = last;
      try { window.localStorage.setItem(KEY, String(last)); } catch (e) { /* private mode */ }
    }
    dismiss();
  }
  /* Tell the server this browser is in use: now if the last report is old enough, else
     as soon as it is. A session the server has signed out already signs out here too. */
  function report() {
    if (reportDue !== null || leaving) return;
    reportDue = window.setTimeout(function () {
      reportDue = null;
      if (leaving) return;
      reported = Date.now();
      fetch("/api/auth/activity", {
        method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf }
      }).then(function (response) {
        if (response.status === 401 && !leaving) signOut();
      }).catch(function () { /* offline: the next use reports again */ });
    }, Math.max(0, reported + REPORT_EVERY - Date.now()));
  }
  function used() {
    active();
    report();
  }
  function dismiss() {
    if (!warning) return;
    warning.remove();
    warning = null;
    if (focused && document.contains(focused)) focused.focus();
  }
  function warn(left) {
    if (!warning) {
      warning = document.createElement("div");
      warning.className = "idle-warning";
      warning.setAttribute("role", "alertdialog");
      warning.setAttribute("aria-labelledby", "idle-text");
      var text = document.createElement("p");
      text.id = "idle-text";
      var stay = document.createElement("button");
      stay.type = "button";
      stay.textContent = "Stay signed in";
      stay.addEventListener("click", used);
      warning.appendChild(text);
      warning.appendChild(stay);
      document.body.appendChild(warning);
      focused = document.activeElement;
      stay.focus();
    }
    document.getElementById("idle-text").textContent =
      "Nobody has used this page for a while: you will be signed out in " +
      Math.ceil(left / 1000) + " s.";
  }
  /* One tab signs the browser out; the others only open the sign-in page once that tab
     has opened it, so they reuse the sign-in form's token its visit set (two first
     visits at once would each get their own, and one form would then be refused as
     expired). The tab that signs out is chosen by a Web Lock, which the browser grants
     to one tab at a time and takes back when its page is gone; where there are no Web
     Locks (plain http beyond localhost), by a mark in localStorage, which other tabs
     see a moment later. */
  function signOut() {
    leaving = true;
    window.clearTimeout(reportDue);
    var next = window.location.pathname + window.location.search;
    if (navigator.locks) {
      navigator.locks.request(LOCK, { ifAvailable: true }, function (lock) {
        if (lock === null) {  /* another tab signs out: wait until its page is gone */
          return navigator.locks.request(LOCK, { signal: AbortSignal.timeout(10000) },
            function () { follow(next); }).catch(function () { follow(next); });
        }
        post(next);
        return new Promise(function () {});  /* held until this page is gone */
      });
      return;
    }
    var out = stored(OUT);
    if (Date.now() - out < 10000) {
      (function wait(since) {
        if (stored(SIGN_IN_PAGE) < out && Date.now() - since < 5000) {
          window.setTimeout(function () { wait(since); }, 100);
        } else {
          follow(next);
        }
      })(Date.now());
      return;
    }
    post(next);
  }
  function post(next) {
    try { window.localStorage.setItem(OUT, String(Date.now())); } catch (e) { /* private mode */ }
    [["idle", "1"], ["next", next]].forEach(
      function (pair) {
        var field = document.createElement("input");
        field.type = "hidden";
        field.name = pair[0];
        field.value = pair[1];
        form.appendChild(field);
      });
    form.submit();
  }
  function follow(next) {
    window.location.assign("/login?" + new URLSearchParams(
      { signed_out: "1", idle: "1", next: next }).toString());
  }
  function check() {
    if (leaving) return;
    var left = Math.max(last, stored(KEY)) + limit - Date.now();
    if (left <= 0) signOut();
    else if (left <= warnFor) warn(left);
    else dismiss();
  }
  ["pointerdown", "keydown", "wheel", "touchstart"].forEach(function (name) {
    document.addEventListener(name, used, { capture: true, passive: true });
  });
  /* Once this browser signs out, the page's own requests (a poll on a timer) stop, and
     the reply to one sent just before (refused: the session is gone) leads nowhere: the
     sign-in page this tab opens says why. */
  ["htmx:beforeRequest", "htmx:beforeOnLoad"].forEach(function (name) {
    document.addEventListener(name, function (event) {
      if (leaving || stored(OUT) > loadedAt) event.preventDefault();
    });
  });
  document.addEventListener("visibilitychange", check);  /* a laptop opened again */
  active();
  window.setInterval(check, 1000);
})();
