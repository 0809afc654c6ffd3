/* Annotator workspace over the JSON API (session cookie + CSRF header).

   Nothing a volunteer gives is lost: an answer (label and box) is kept in sessionStorage
   from before it is sent until the server has it, so a lost connection or an ended
   session offers to send it again; the server never counts an answer twice, so a resent
   answer whose first reply was lost is reported as saved. */
(function () {
  "use strict";
  /* A request that has not answered by then is given up (a lost connection can otherwise
     wait for minutes). */
  var TIMEOUT_MS = 20000;
  var PENDING = "medloop-pending-answer";
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var $ = function (id) { return document.getElementById(id); };
  var viewer = window.medloopViewer($("viewer"), $("stage"), $("image"), { announce: status });
  var shortcutsOn = window.medloopShortcuts($("shortcuts-holder"));
  var task = null, busy = false, continuing = false, afterFeedback = false;

  function api(method, url, body) {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, TIMEOUT_MS);
    var options = {
      method: method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf },
      signal: controller.signal
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).finally(function () { clearTimeout(timer); });
  }

  /* A POST; one refused for its CSRF token (the person signed in again in another tab,
     which starts a new session) is sent once more with the token of a freshly loaded
     workspace page. */
  function post(url, body) {
    return api("POST", url, body).then(function (response) {
      if (response.status !== 403) return response;
      return freshToken().then(function (token) {
        if (!token || token === csrf) return response;
        csrf = token;
        return api("POST", url, body);
      });
    });
  }
  function freshToken() {
    return fetch("/annotate", { credentials: "same-origin" }).then(function (response) {
      if (!response.ok || response.redirected) return null;  /* signed out: no token */
      return response.text().then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var meta = page.querySelector('meta[name="csrf-token"]');
        return meta ? meta.content : null;
      });
    }).catch(function () { return null; });
  }

  /* What went wrong, in plain words (never "Failed to fetch" or a JSON parse error). */
  function problem(message) {
    var error = new Error(message);
    error.plain = true;
    return error;
  }
  function plainReason(error) {
    if (error.plain) return error.message;
    if (error.name === "AbortError") return "The server did not answer in time.";
    return "The connection to the server failed.";
  }
  /* The JSON body of a reply; one that is not JSON (a proxy's error page) is a problem. */
  function json(response) {
    var type = response.headers.get("content-type") || "";
    if (type.indexOf("application/json") === -1) {
      return Promise.reject(problem(response.status >= 500
        ? "Something went wrong on the server." : "The server sent an unexpected reply."));
    }
    return response.json();
  }
  function detailOf(response) {
    return json(response).then(function (data) {
      return typeof data.detail === "string" ? data.detail : "";
    }, function () { return ""; });
  }
  /* The case a refusal names for programs (`code` beside `detail`), or "". */
  function codeOf(response) {
    return json(response).then(function (data) {
      return typeof data.code === "string" ? data.code : "";
    }, function () { return ""; });
  }
  /* A reply that is neither a success nor one of the cases handled where it comes. */
  function refused(response) {
    if (response.status === 403) {
      return Promise.reject(problem("This page is out of date (you signed in again elsewhere). "
        + "Reload the page to go on."));
    }
    if (response.status >= 500) return Promise.reject(problem("Something went wrong on the server."));
    return detailOf(response).then(function (text) {
      throw problem("The server refused it" + (text ? ": " + text : "") + ".");
    });
  }

  function status(text) { $("status").textContent = text; }
  function say(text, kind) {
    var feedback = $("feedback");
    feedback.className = "feedback" + (kind ? " " + kind : "");
    feedback.textContent = text || "";
  }
  /* One button under the status line for the way on: Send again, Retry, Send my answer. */
  var retryAction = null;
  function offer(label, action) {
    var button = $("retry");
    button.textContent = label;
    retryAction = action;
    button.hidden = false;
  }
  function withdraw() { $("retry").hidden = true; retryAction = null; }

  function remember(sent) {
    try { window.sessionStorage.setItem(PENDING, JSON.stringify(sent)); } catch (error) { /* private mode */ }
  }
  function forget() {
    try { window.sessionStorage.removeItem(PENDING); } catch (error) { /* private mode */ }
  }
  function kept() {
    try { return JSON.parse(window.sessionStorage.getItem(PENDING) || "null"); } catch (error) { return null; }
  }

  /* The session ended (signed out elsewhere, or expired): say so, with the way back. */
  function signedOut() {
    var line = $("status");
    line.textContent = "Your session has ended (nothing was saved). ";
    var link = document.createElement("a");
    link.href = "/login?next=/annotate";
    link.textContent = "Sign in again";
    line.appendChild(link);
    line.appendChild(document.createTextNode(
      " to go on: your answer and box are kept in this tab until you are back."));
    var error = new Error("signed out");
    error.signedOut = true;
    return error;
  }
  function failed(error, context, label, action) {
    busy = false;
    if (error.signedOut) return;
    status(plainReason(error) + " " + context);
    offer(label, action);
    $("retry").focus();
  }

  function countDown() {
    var waiting = $("waiting");
    waiting.textContent = String(Math.max(0, parseInt(waiting.textContent, 10) - 1));
  }

  function showProgress(progress) {
    $("answered").textContent = progress.answered;
    $("gold").textContent = progress.gold_accuracy === null ? "–"
      : Math.round(100 * progress.gold_accuracy) + "% of " + progress.gold_answered;
  }

  /* The controls of an image already answered (or on its way) say they do nothing now. */
  function setWaiting(on) {
    var buttons = Array.prototype.slice.call($("choices").querySelectorAll("button"));
    buttons.concat([$("skip"), $("unsure")]).forEach(function (button) {
      if (on) button.setAttribute("aria-disabled", "true"); else button.removeAttribute("aria-disabled");
    });
  }

  /* New buttons for a new image; the keyboard focus moves to the button in the same
     place (it would otherwise fall to the page), or to the status line when none is. */
  function renderChoices() {
    var holder = $("choices");
    var old = Array.prototype.indexOf.call(holder.children, document.activeElement);
    holder.textContent = "";
    if (task) {
      task.choices.forEach(function (choice, index) {
        var button = document.createElement("button");
        button.type = "button";
        button.className = "choice";
        button.dataset.label = choice;
        var key = document.createElement("kbd");
        key.textContent = String(index + 1);
        button.appendChild(key);
        button.appendChild(document.createTextNode(" " + choice));
        button.addEventListener("click", function () { answer(choice); });
        holder.appendChild(button);
      });
    }
    if (old < 0) return;
    var same = holder.children[Math.min(old, holder.children.length - 1)];
    (same || $("status")).focus({ preventScroll: true });
  }

  /* With no task there is nothing to look at or skip: the viewer and its buttons go. */
  function showTask(next) {
    task = next;
    var workspace = $("workspace");
    if (next) workspace.dataset.task = next.task_id; else delete workspace.dataset.task;
    $("viewer").hidden = !next;
    $("task-controls").hidden = !next;
    if (!next) $("waiting").textContent = "0";
    renderChoices();
  }

  /* An answer counts only for an image its person has seen: answers wait until the image
     is on screen, and a moment more, so that a held key or a quick second tap cannot
     answer the next image unseen. */
  var SEEN_MS = 250;
  function onScreen(image) {
    return new Promise(function (resolve) {
      if (image.complete && image.naturalWidth > 0) { resolve(); return; }
      image.addEventListener("load", resolve, { once: true });
      image.addEventListener("error", resolve, { once: true });
    }).then(function () {
      return new Promise(function (resolve) { setTimeout(resolve, SEEN_MS); });
    });
  }

  /* The image in view again (on a phone the page may have scrolled down to the buttons). */
  function bringIntoView() {
    if ($("viewer").getBoundingClientRect().top < 0) $("workspace").scrollIntoView({ block: "start" });
  }

  /* An answer kept from before (the session ended, or the connection failed, and the page
     was loaded again) for the image now shown: its box is back, and one button sends it. */
  function offerKept(next) {
    var earlier = kept();
    if (!earlier) return false;
    if (earlier.task_id !== next.task_id || next.choices.indexOf(earlier.label) < 0) {
      forget();  /* that image is not yours any more: nothing to send */
      return false;
    }
    viewer.setBox(earlier.box);
    status("Your answer to this image was not saved yet: " + earlier.label
      + (earlier.box ? ", with your box" : "") + ". Send it, or choose again.");
    offer("Send my answer (" + earlier.label + ")", function () { send(earlier); });
    return true;
  }

  /* The next image; `note` (said in the feedback line) tells what became of the last one. */
  function load(note, kind) {
    busy = true;
    continuing = false;
    task = null;  /* the image on screen is done with: its buttons do nothing now */
    setWaiting(true);
    withdraw();
    $("feedback-next").hidden = true;
    say(note, kind);
    status("Loading the next image…");
    api("GET", "/api/tasks/next").then(function (response) {
      if (response.status === 401) throw signedOut();
      if (response.status === 204) {
        showTask(null);
        $("image").removeAttribute("src");
        status("No image is waiting for you right now. Thank you!");
        if (afterFeedback) $("status").focus();  /* the Next button that had the focus is gone */
        afterFeedback = false;
        busy = false;
        return;
      }
      if (!response.ok) return refused(response);
      return json(response).then(function (next) {
        viewer.clearBox();
        $("image").src = next.image_url;
        $("image").alt = "Image to label, task " + next.task_id;  /* a new image is announced */
        showTask(next);
        bringIntoView();
        if (afterFeedback) {  /* the Next button that had the focus is gone */
          afterFeedback = false;
          $("choices").firstChild.focus({ preventScroll: true });
        }
        return onScreen($("image")).then(function () {
          busy = false;
          setWaiting(false);
          if (!offerKept(next)) status("Which of these does the image show?");
        });
      });
    }).catch(function (error) {
      failed(error, "The next image could not be loaded.", "Retry", function () { load(note, kind); });
    });
  }

  /* A check question answered wrongly keeps its image on screen, with the expected
     answer, until its person goes on (`continuing`). */
  function goOn() {
    if (!continuing) return;
    afterFeedback = true;
    load();
  }

  function answer(label) {
    if (!task || busy || continuing) return;
    send({ task_id: task.task_id, label: label, box: viewer.box() });
  }

  function send(sent) {
    if (busy) return;
    busy = true;
    withdraw();
    setWaiting(true);
    remember(sent);
    status("Sending your answer…");
    var body = { label: sent.label };
    if (sent.box) body.box = sent.box;
    post("/api/tasks/" + sent.task_id + "/answer", body).then(function (response) {
      if (response.status === 401) throw signedOut();
      if (response.status === 409) {
        return codeOf(response).then(function (code) {
          forget();
          /* sent before and stored, its reply lost: the server counts an answer once */
          if (code === "already_answered") return { note: "Your answer was saved.", kind: "good" };
          return { note: "Not saved: this image is no longer yours to answer. On to the next one." };
        });
      }
      if (!response.ok) return refused(response);
      return json(response).then(function (data) {
        forget();
        if (data.progress) showProgress(data.progress);
        countDown();
        if (data.gold && data.gold.correct) {
          return { note: "The last image was a check question: you were right!", kind: "good" };
        }
        if (data.gold) return { expected: data.gold.expected };
        return {};
      });
    }).then(function (outcome) {
      busy = false;
      if (outcome.expected === undefined) { load(outcome.note, outcome.kind); return; }
      continuing = true;
      say("This image was a check question: the expected answer was " + outcome.expected
        + ". Have another look, then go on.", "bad");
      status("");
      $("feedback-next").hidden = false;
      $("feedback-next").focus();
    }).catch(function (error) {
      setWaiting(false);
      failed(error, "Your answer may not have been saved: send it again (it is never counted twice).",
        "Send again", function () { send(sent); });
    });
  }

  function skip(reason) {
    if (!task || busy || continuing) return;
    busy = true;
    withdraw();
    setWaiting(true);
    var said = reason === "unsure" ? "Marked unsure — next image." : "Skipped — next image.";
    post("/api/tasks/" + task.task_id + "/skip", { reason: reason }).then(function (response) {
      if (response.status === 401) throw signedOut();
      if (response.status === 409) { busy = false; load(); return; }  /* not ours any more */
      if (!response.ok) return refused(response);
      countDown();
      busy = false;
      load(said);
    }).catch(function (error) {
      setWaiting(false);
      failed(error, "The image was not skipped.", "Try again", function () { skip(reason); });
    });
  }

  function toggleBox() {
    var on = !viewer.boxMode();
    viewer.setBoxMode(on);
    $("box-mode").setAttribute("aria-pressed", String(on));
  }
  function filters() { viewer.setFilter(+$("contrast").value, +$("brightness").value); }

  $("retry").addEventListener("click", function () { if (retryAction) retryAction(); });
  $("skip").addEventListener("click", function () { skip("skip"); });
  $("unsure").addEventListener("click", function () { skip("unsure"); });
  $("box-mode").addEventListener("click", toggleBox);
  $("box-clear").addEventListener("click", function () { viewer.clearBox(); });
  $("contrast").addEventListener("input", filters);
  $("brightness").addEventListener("input", filters);
  $("reset-view").addEventListener("click", function () {
    $("contrast").value = 100; $("brightness").value = 100; viewer.reset();
  });
  $("feedback-next").addEventListener("click", goOn);
  document.addEventListener("keydown", function (event) {
    if (!shortcutsOn()) return;
    var tag = event.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.repeat) return;  /* a held key answers once */
    var key = event.key.toLowerCase();
    if (continuing) {
      if (key === "n") goOn();  /* Enter and Space press the focused Next button */
      return;
    }
    if (task && /^[1-9]$/.test(key) && +key <= task.choices.length) answer(task.choices[+key - 1]);
    else if (key === "s") skip("skip");
    else if (key === "u") skip("unsure");
    else if (key === "b") toggleBox();
    else if (key === "r") $("reset-view").click();
  });
  load();
})();
