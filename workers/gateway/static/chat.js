// The console's agent run page: follows the run's server-sent events (no inline script: the
// Content-Security-Policy allows scripts from the console only). Each progress line is added to
// the log as it happens; a pending approval shows the answer forms; the answer ends the stream.
(function () {
  "use strict";
  var log = document.getElementById("log");
  if (!log || !window.EventSource) { return; }
  var answer = document.getElementById("answer");
  var status = document.getElementById("run-status");
  var approval = document.getElementById("approval");
  var source = new EventSource(log.getAttribute("data-stream"));
  function show(data) {
    status.textContent = data.status;
    if (approval) { approval.hidden = data.status !== "awaiting_approval"; }
  }
  var words = "";  // the model's words as it writes them, then what is left of the answer
  // the stream starts from the run's beginning each time it (re)connects
  source.onopen = function () { log.textContent = ""; words = ""; };
  source.addEventListener("text", function (e) {
    words += JSON.parse(e.data).text;
    answer.textContent = words.trim();
    answer.hidden = false;
  });
  source.addEventListener("line", function (e) {
    var data = JSON.parse(e.data);
    var li = document.createElement("li");
    li.textContent = data.text;
    log.appendChild(li);
    show(data);
  });
  function end(e) {
    var data = JSON.parse(e.data);
    answer.textContent = (e.type === "answer" ? words + data.text : data.text).trim();
    answer.hidden = false;
    show(data);
    source.close();
    log.setAttribute("aria-busy", "false");
  }
  source.addEventListener("answer", end);
  source.addEventListener("failed", end);
})();
