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

  function load() {
    busy = true;
    status("Loading the next task…");
    api("GET", "/api/tasks/next").then(function (response) {
      if (response.status === 204) {
        task = null; renderChoices();
        $("image").removeAttribute("src");
        status("No task waiting for you right now. Thank you!");
        return;
      }
      if (!response.ok) throw new Error("could not load a task (" + response.status + ")");
      return response.json().then(function (next) {
        task = next;
        viewer.clearBox();
        $("image").src = next.image_url;
        renderChoices();
        status("Task " + next.task_id + ": which is it?");
      });
    }).catch(function (error) { status(error.message); })
      .finally(function () { busy = false; });
  }

  function answer(label) {
    if (!task || busy) return;
    busy = true;
    var body = { label: label };
    var box = viewer.box();
    if (box) body.box = box;
    api("POST", "/api/tasks/" + task.task_id + "/answer", body).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok && response.status !== 409) throw new Error(data.detail || "answer failed");
        if (data.progress) showProgress(data.progress);
        var feedback = $("feedback");
        feedback.className = "feedback";
        feedback.textContent = "";
        if (response.status === 409) {
          feedback.textContent = "Not saved: " + data.detail + ". Here is another image.";
        } else if (data.gold) {
          feedback.classList.add(data.gold.correct ? "good" : "bad");
          feedback.textContent = data.gold.correct
            ? "The last image was a check question: you were right!"
            : "The last image was a check question: the expected answer was "
              + data.gold.expected + ".";
        }
      });
    }).then(function () { busy = false; load(); })
      .catch(function (error) { busy = false; status(error.message); });
  }

  function skip(reason) {
    if (!task || busy) return;
    busy = true;
    api("POST", "/api/tasks/" + task.task_id + "/skip", { reason: reason })
      .then(function (response) {
        if (!response.ok) throw new Error("could not skip (" + response.status + ")");
        busy = false; load();
      })
      .catch(function (error) { busy = false; status(error.message); });
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
