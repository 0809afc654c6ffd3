/* The sign-in page tells the browser's other tabs when it opened: a tab following another
   one's idle sign-out (idle.js) opens it only after that, so both share the form token
   this visit's cookie holds. */
(function () {
  "use strict";
  try { window.localStorage.setItem("medloop.signInPageAt", String(Date.now())); } catch (e) { /* private mode */ }
})();
