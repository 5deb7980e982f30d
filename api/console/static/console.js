// Live countdowns to deadlines: every element with data-deadline (an ISO time) shows the time
// left ("剩余 3小时12分") or the time past it ("已超时 12分"), refreshed every second.
(function () {
  "use strict";
  function span(ms) {
    var minutes = Math.floor(ms / 60000), days = Math.floor(minutes / 1440);
    var hours = Math.floor((minutes % 1440) / 60), mins = minutes % 60;
    if (days > 0) { return days + "天" + hours + "小时"; }
    if (hours > 0) { return hours + "小时" + mins + "分"; }
    if (minutes > 0) { return mins + "分"; }
    return Math.max(0, Math.floor(ms / 1000)) + "秒";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("data-deadline"));
      if (isNaN(at)) { return; }
      var left = at - now;
      el.textContent = left >= 0 ? "剩余 " + span(left) : "已超时 " + span(-left);
      el.classList.toggle("over", left < 0);
      el.classList.toggle("soon", left >= 0 && left < 3600000);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { tick(); setInterval(tick, 1000); });
  document.addEventListener("htmx:afterSwap", tick);
})();

// A form being sent says so: its button reads "正在提交…" (aria-busy) until the next page,
// and a second click on it sends nothing more. Back to the page (history): usable again.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (event.defaultPrevented || (form.method || "").toLowerCase() !== "post") { return; }
    if (form.getAttribute("data-sending")) { event.preventDefault(); return; }
    form.setAttribute("data-sending", "1");
    var button = form.querySelector("button[type=submit], button:not([type])");
    if (!button) { return; }
    button.setAttribute("data-label", button.textContent);
    button.setAttribute("aria-busy", "true");
    button.textContent = "正在提交…";
  });
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-sending]").forEach(function (form) {
      form.removeAttribute("data-sending");
      var button = form.querySelector("button[aria-busy]");
      if (button) {
        button.textContent = button.getAttribute("data-label");
        button.removeAttribute("aria-busy");
      }
    });
  });
})();

// A refused form (data-failed: the case page's action sent again with what was typed): the
// cursor goes to its first field, where its error is shown, even far down the page.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var field = document.querySelector(
    "form[data-failed] textarea, form[data-failed] select, form[data-failed] input:not([type=hidden])");
  if (field) { field.focus(); }
});
