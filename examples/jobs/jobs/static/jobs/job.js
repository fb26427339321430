// The job page: one WebSocket to /ws/jobs/ID (same origin, so the session cookie goes
// along). It gets the job's state first, then progress as the Celery task reports it, then
// done (or failed). It reconnects after a drop until the job is over.
(function () {
  const page = document.getElementById("job");
  const status = document.getElementById("status");
  const reasons = document.querySelector("#reasons tbody");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = scheme + "//" + location.host + "/ws/jobs/" + encodeURIComponent(page.dataset.job);
  let current = -1;
  let updates = 0;
  let delay = 1000;

  function text(id, value) { document.getElementById(id).textContent = value; }

  function setState(state) {
    page.dataset.state = state;
    const el = document.getElementById("state");
    el.textContent = state;
    el.className = "state state-" + state;
  }

  function addReasons(list, replace) {
    if (replace) reasons.replaceChildren();
    (list || []).forEach((r) => {
      if (reasons.querySelector('tr[data-line="' + r.line + '"]')) return; // seen already
      const tr = document.createElement("tr");
      tr.dataset.line = r.line;
      const line = document.createElement("td");
      line.className = "n";
      line.textContent = r.line;
      const why = document.createElement("td");
      why.textContent = r.reason;
      tr.append(line, why);
      reasons.appendChild(tr);
    });
  }

  function show(m, replace) {
    // Progress can arrive both ways around a (re)connect: keep the furthest.
    if (!replace && m.current < current) return;
    current = m.current;
    const bar = document.getElementById("bar");
    bar.max = m.total || 1;
    bar.value = m.current;
    text("rows", m.current + " of " + m.total + " rows");
    text("imported", m.imported);
    text("rejected", m.rejected);
    addReasons(m.reasons, replace);
  }

  function final() { return page.dataset.state === "done" || page.dataset.state === "failed"; }

  function failed(error) {
    setState("failed");
    const el = document.getElementById("error");
    el.textContent = error;
    el.hidden = !error;
  }

  function connect() {
    const socket = new WebSocket(url);
    socket.onopen = () => { delay = 1000; status.textContent = "live"; status.dataset.state = "connected"; };
    socket.onmessage = (event) => {
      const m = JSON.parse(event.data);
      text("updates", ++updates);
      if (m.type === "state" || m.type === "done") {
        if (m.imported === undefined) { location.reload(); return; } // result too big to send
        show(m, true);
        if (m.state === "failed") failed(m.error); else setState(m.state);
      } else if (m.type === "progress" && !final()) {
        if (page.dataset.state === "queued") setState("running");
        show(m, false);
      } else if (m.type === "failed") {
        failed(m.error);
      }
      if (final()) {
        status.textContent = "finished";
        socket.onclose = null;
        socket.close();
      }
    };
    socket.onclose = () => {
      status.textContent = "disconnected, reconnecting…";
      status.dataset.state = "disconnected";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
