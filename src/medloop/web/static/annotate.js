/* Annotator workspace over the JSON API (session cookie + CSRF header). */
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var $ = function (id) { return document.getElementById(id); };
  var viewer = window.medloopViewer($("viewer"), $("stage"), $("image"));
  var task = null, busy = false;

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

  function load() {
    busy = true;
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
        status("Which of these does the image show?");
      });
    }).catch(report)
      .finally(function () { busy = false; });
  }

  function answer(label) {
    if (!task || busy) return;
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
          feedback.textContent = "Not saved: that image was already answered (perhaps in"
            + " another window), or has all the answers it needs. On to the next one.";
        } else if (data.gold) {
          feedback.classList.add(data.gold.correct ? "good" : "bad");
          feedback.textContent = data.gold.correct
            ? "The last image was a check question: you were right!"
            : "The last image was a check question: the expected answer was "
              + data.gold.expected + ".";
        }
      });
    }).then(function () { busy = false; load(); })
      .catch(report);
  }

  function skip(reason) {
    if (!task || busy) return;
    busy = true;
    api("POST", "/api/tasks/" + task.task_id + "/skip", { reason: reason })
      .then(checked)
      .then(function (response) {
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
  document.addEventListener("keydown", function (event) {
    if (event.target.tagName === "INPUT" || event.ctrlKey || event.metaKey || event.altKey) return;
    var key = event.key.toLowerCase();
    if (task && /^[1-9]$/.test(key) && +key <= task.choices.length) answer(task.choices[+key - 1]);
    else if (key === "s") skip("skip");
    else if (key === "u") skip("unsure");
    else if (key === "b") toggleBox();
    else if (key === "r") $("reset-view").click();
  });
  load();
})();
