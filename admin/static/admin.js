/* Scholarise admin pages: the live task dropdown, live task detail, local times, confirmations.
 *
 * Everything that came from users or files is written with textContent, never innerHTML,
 * so a task called "<img src=x onerror=...>" shows as that text.
 */
(function () {
  "use strict";

  var FAST = 1500;   // while something is running
  var SLOW = 6000;   // when nothing is
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "class") { node.className = attrs[key]; } else { node.setAttribute(key, attrs[key]); }
    });
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function getJSON(url) {
    return fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { throw new Error("signed-out"); }
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      });
  }

  function post(url) {
    return fetch(url, { method: "POST", credentials: "same-origin",
                        headers: { "Accept": "application/json", "X-CSRFToken": csrf } })
      .then(function (r) { return r.json().catch(function () { return { ok: false, message: "HTTP " + r.status }; }); });
  }

  var COLOURS = { COMPLETED: "bg-success", COMPLETED_WITH_ERRORS: "bg-warning", FAILED: "bg-danger", CANCELLED: "bg-secondary" };
  var BADGES = { PENDING: "info", RUNNING: "primary", COMPLETED: "success", COMPLETED_WITH_ERRORS: "warning",
                 FAILED: "danger", CANCELLED: "secondary" };

  function progressBar(task) {
    var pct = Math.max(0, Math.min(100, Math.round(task.progress)));
    var outer = el("div", { "class": "progress task-progress", title: pct + " %" });
    var bar = el("div", { "class": "progress-bar " + (COLOURS[task.status] || "") +
                          (task.status === "RUNNING" ? " progress-bar-striped progress-bar-animated" : ""),
                          role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100 },
                 pct + " %");
    bar.style.width = pct + "%";
    outer.appendChild(bar);
    return outer;
  }

  function badge(task) {
    return el("span", { "class": "badge badge-" + (BADGES[task.status] || "light") + " status-badge",
                        "data-status": task.status }, task.status_label);
  }

  /* ---- header dropdown ---------------------------------------------------------------- */

  function menuItem(task, finished) {
    var item = el("div", { "class": "task-menu-item", "data-task-id": task.id, "data-status": task.status });
    var title = el("a", { "class": "task-menu-title", href: task.detail_url }, "#" + task.id + " " + task.title);
    item.appendChild(title);
    var meta = el("div", { "class": "task-menu-meta" });
    meta.appendChild(badge(task));
    meta.appendChild(document.createTextNode(" " + task.processed + " of " + task.total + " rows · " +
      task.created + " created · " + task.existing + " existed · " + task.failed + " failed" +
      (task.cancelled ? " · " + task.cancelled + " cancelled" : "") +
      (task.branch ? " · " + task.branch : "")));
    item.appendChild(progressBar(task));
    item.appendChild(meta);
    if (finished) {
      var actions = el("div", { "class": "task-menu-actions" });
      actions.appendChild(el("a", { href: task.results_url, download: "", "class": "task-menu-download" }, "Download results"));
      if (task.delete_url) {
        var del = el("button", { type: "button", "class": "task-menu-delete", "data-url": task.delete_url }, "Delete");
        actions.appendChild(del);
      }
      item.appendChild(actions);
    }
    return item;
  }

  function fill(container, tasks, finished, empty) {
    container.textContent = "";
    if (!tasks.length) { container.appendChild(el("p", { "class": "task-menu-empty" }, empty)); return; }
    tasks.forEach(function (t) { container.appendChild(menuItem(t, finished)); });
  }

  function startMenu() {
    var menu = document.querySelector(".task-menu[data-feed]");
    if (!menu) { return; }
    var active = document.getElementById("task-menu-active");
    var recent = document.getElementById("task-menu-recent");
    var count = document.getElementById("task-menu-count");
    var timer = null;

    function schedule(delay) { clearTimeout(timer); timer = setTimeout(poll, delay); }

    function poll() {
      getJSON(menu.getAttribute("data-feed")).then(function (data) {
        fill(active, data.active, false, "Nothing is running.");
        fill(recent, data.recent, true, "Nothing has finished yet.");
        count.hidden = !data.active.length;
        count.textContent = data.active.length ? String(data.active.length) : "";
        document.body.setAttribute("data-feed-updates", String(Number(document.body.getAttribute("data-feed-updates") || 0) + 1));
        schedule(data.active.length ? FAST : SLOW);
      }).catch(function (err) {
        if (err.message === "signed-out") {
          active.textContent = "";
          active.appendChild(el("p", { "class": "task-menu-empty" }, "You were signed out. Reload the page to sign in again."));
          return;
        }
        schedule(SLOW);
      });
    }

    menu.addEventListener("click", function (event) {
      var button = event.target.closest(".task-menu-delete");
      if (!button) { return; }
      event.preventDefault();
      event.stopPropagation();
      if (!window.confirm("Delete this task with all its rows and log? This cannot be undone.")) { return; }
      post(button.getAttribute("data-url")).then(function (answer) {
        if (!answer.ok) { window.alert(answer.message || "The task could not be deleted."); }
        else if (/\/admin\/tasks\/?$/.test(window.location.pathname)) { window.location.reload(); return; }
        poll();
      });
    });
    document.getElementById("task-menu-toggle").addEventListener("click", function () { schedule(0); });
    poll();
  }

  /* ---- task detail page ----------------------------------------------------------------- */

  function startDetail() {
    var page = document.querySelector("[data-task-status-url]");
    if (!page || page.getAttribute("data-finished") === "true") { return; }
    var url = page.getAttribute("data-task-status-url");
    function set(name, node) {
      var target = page.querySelector('[data-field="' + name + '"]');
      if (!target) { return; }
      target.textContent = "";
      if (typeof node === "object") { target.appendChild(node); } else { target.textContent = String(node); }
    }
    function poll() {
      getJSON(url).then(function (task) {
        set("status", badge(task));
        set("progress", progressBar(task));
        ["total", "processed", "created", "existing", "failed", "cancelled", "duration"].forEach(function (k) { set(k, task[k]); });
        if (task.finished) {
          page.setAttribute("data-finished", "true");
          page.querySelector("[data-finished-notice]").hidden = false;
          page.querySelectorAll("[data-active-only]").forEach(function (node) { node.remove(); });
          return;
        }
        setTimeout(poll, FAST);
      }).catch(function () { setTimeout(poll, SLOW); });
    }
    setTimeout(poll, FAST);
  }

  /* ---- small things ------------------------------------------------------------------------ */

  function localTimes(root) {
    (root || document).querySelectorAll("time[data-local]").forEach(function (node) {
      var when = new Date(node.getAttribute("datetime"));
      if (isNaN(when.getTime())) { return; }
      var options = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
      if (when.getFullYear() !== new Date().getFullYear()) { options.year = "numeric"; }
      node.title = node.textContent;
      node.textContent = when.toLocaleString([], options);
    });
  }

  function tooLarge(form) {
    /* Refuse an oversize file before sending it: the server could not read the form's other choices. */
    var limit = Number(form.getAttribute && form.getAttribute("data-max-bytes"));
    var input = limit && form.querySelector("input[type=file]");
    var file = input && input.files && input.files[0];
    if (!file || file.size <= limit) { return false; }
    var box = document.getElementById("upload-error");
    if (!box) {
      box = el("div", { "class": "alert alert-danger", role: "alert", id: "upload-error" });
      form.parentNode.insertBefore(box, form);
    }
    box.textContent = form.getAttribute("data-too-large");
    return true;
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (tooLarge(form)) { event.preventDefault(); return; }
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    localTimes();
    startMenu();
    startDetail();
  });
}());
