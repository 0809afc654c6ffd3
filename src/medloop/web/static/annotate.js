/* Annotator workspace over the JSON API (session cookie + CSRF header). */
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var $ = function (id) { return document.getElementById(id); };
  var viewer = window.medloopViewer($("viewer"), $("stage"), $("image"));
  var task = null, busy = false, continuing = false;

  function api(method, url, body) {
    var options = { method: method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(url, options);
  }
  function status(text) { $("status").textContent = text; }

  /* The session ended (signed out elsewhere, or expired): say so, with the way back. */
  function signedOut() {
    var line = $("status");
    line.textContent = "Your session has ended (nothing was saved). ";
    var link = document.createElement("a");
    link.href = "/login";
    link.textContent = "Sign in again";
    line.appendChild(link);
    line.appendChild(document.createTextNode(" to go on."));
    return new Error("signed out");
  }
  function checked(response) {
    if (response.status === 401) throw signedOut();
    return response;
  }
  function report(error) {
    busy = false;
    if (error.message !== "signed out") status(error.message);
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

  function renderChoices() {
    var holder = $("choices");
    holder.textContent = "";
    if (!task) return;
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

  function load() {
    busy = true;
    continuing = false;
    $("feedback-next").hidden = true;
    status("Loading the next image…");
    api("GET", "/api/tasks/next").then(checked).then(function (response) {
      if (response.status === 204) {
        showTask(null);
        $("image").removeAttribute("src");
        status("No image is waiting for you right now. Thank you!");
        return;
      }
      if (!response.ok) throw new Error("could not load an image (" + response.status + ")");
      return response.json().then(function (next) {
        viewer.clearBox();
        $("image").src = next.image_url;
        $("image").alt = "Image to label, task " + next.task_id;  /* a new image is announced */
        showTask(next);
        return onScreen($("image")).then(function () {
          status("Which of these does the image show?");
        });
      });
    }).catch(report)
      .finally(function () { busy = false; });
  }

  /* A check question answered wrongly keeps its image on screen, with the expected
     answer, until its person goes on (`continuing`). */
  function goOn() {
    if (continuing) load();
  }

  function answer(label) {
    if (!task || busy || continuing) return;
    busy = true;
    var body = { label: label };
    var box = viewer.box();
    if (box) body.box = box;
    api("POST", "/api/tasks/" + task.task_id + "/answer", body).then(checked).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok && response.status !== 409) throw new Error(data.detail || "answer failed");
        if (data.progress) showProgress(data.progress);
        if (response.ok) countDown();
        var feedback = $("feedback");
        feedback.className = "feedback";
        feedback.textContent = "";
        if (response.status === 409) {
          feedback.textContent = "Not saved: " + (data.detail || "this image is no longer yours to"
            + " answer") + ". On to the next one.";
        } else if (data.gold && data.gold.correct) {
          feedback.classList.add("good");
          feedback.textContent = "The last image was a check question: you were right!";
        } else if (data.gold) {
          feedback.classList.add("bad");
          feedback.textContent = "This image was a check question: the expected answer was "
            + data.gold.expected + ". Have another look, then go on.";
          return true;
        }
        return false;
      });
    }).then(function (wait) {
      busy = false;
      if (!wait) { load(); return; }
      continuing = true;
      status("");
      $("feedback-next").hidden = false;
      $("feedback-next").focus();
    }).catch(report);
  }

  function skip(reason) {
    if (!task || busy || continuing) return;
    busy = true;
    api("POST", "/api/tasks/" + task.task_id + "/skip", { reason: reason })
      .then(checked)
      .then(function (response) {
        if (response.status === 409) { busy = false; load(); return; }  /* not ours any more */
        if (!response.ok) throw new Error("could not skip (" + response.status + ")");
        countDown();
        busy = false; load();
      })
      .catch(report);
  }

  function toggleBox() {
    var on = !viewer.boxMode();
    viewer.setBoxMode(on);
    $("box-mode").setAttribute("aria-pressed", String(on));
  }
  function filters() { viewer.setFilter(+$("contrast").value, +$("brightness").value); }

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
    if (event.target.tagName === "INPUT" || event.ctrlKey || event.metaKey || event.altKey) return;
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
