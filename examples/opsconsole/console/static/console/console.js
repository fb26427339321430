// The live pane: one WebSocket to /ws/run (same origin, so the session cookie goes along).
(function () {
  const output = document.getElementById("output");
  const state = document.getElementById("state");
  const cancel = document.getElementById("cancel");
  const buttons = document.querySelectorAll("button.run");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(scheme + "//" + location.host + "/ws/run");

  function busy(on) {
    buttons.forEach((b) => (b.disabled = on));
    cancel.disabled = !on;
  }
  busy(true);
  cancel.disabled = true;

  socket.onopen = () => { state.textContent = "ready"; busy(false); };
  socket.onclose = () => { state.textContent = "disconnected (reload the page)"; busy(true); cancel.disabled = true; };
  socket.onmessage = (event) => {
    const m = JSON.parse(event.data);
    if (m.type === "started") {
      output.textContent = "";
      state.textContent = "running " + m.command + " (run " + m.run + ")";
      busy(true);
    } else if (m.type === "output") {
      const line = document.createElement("span");
      line.className = m.stream;
      line.textContent = m.data;
      output.appendChild(line);
    } else if (m.type === "done") {
      state.textContent = m.status + " (exit " + m.exit_status + ", " + m.duration + " s)";
      state.dataset.status = m.status;
      busy(false);
    } else if (m.type === "error") {
      state.textContent = "error: " + m.message;
    }
  };
  buttons.forEach((b) =>
    b.addEventListener("click", () => socket.send(JSON.stringify({ action: "run", command: b.dataset.command })))
  );
  cancel.addEventListener("click", () => socket.send(JSON.stringify({ action: "cancel" })));
})();
