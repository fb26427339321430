// The room page: one WebSocket to /ws/chat/ROOM (same origin, so the session cookie goes
// along). It reconnects after a drop; each connection starts with hello and history.
(function () {
  const chat = document.getElementById("chat");
  const log = document.getElementById("log");
  const status = document.getElementById("status");
  const worker = document.getElementById("worker");
  const form = document.getElementById("send");
  const input = document.getElementById("text");
  const button = document.getElementById("send-button");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = scheme + "//" + location.host + "/ws/chat/" + encodeURIComponent(chat.dataset.room);
  let socket = null;
  let me = null;
  let delay = 1000;

  function setStatus(text, ok) {
    status.textContent = text;
    status.dataset.state = ok ? "connected" : "disconnected";
    input.disabled = button.disabled = !ok;
  }

  function show(m) {
    if (document.querySelector('#log li[data-id="' + m.id + '"]')) return; // seen already
    const li = document.createElement("li");
    li.className = "message" + (m.user === me ? " mine" : "");
    li.dataset.id = m.id;
    const who = document.createElement("span");
    who.className = "user";
    who.textContent = m.user;
    const when = document.createElement("time");
    when.dateTime = m.created;
    when.textContent = new Date(m.created).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = m.text;
    li.append(who, when, text);
    log.appendChild(li);
    log.scrollTop = log.scrollHeight;
  }

  function connect() {
    socket = new WebSocket(url);
    socket.onopen = () => { delay = 1000; };
    socket.onmessage = (event) => {
      const m = JSON.parse(event.data);
      if (m.type === "hello") {
        me = m.user;
        worker.textContent = m.pid;
        worker.dataset.pid = m.pid;
        setStatus("connected", true);
      } else if (m.type === "history") {
        log.replaceChildren();
        m.messages.forEach(show);
      } else if (m.type === "message") {
        show(m);
      } else if (m.type === "error") {
        status.textContent = m.message;
      }
    };
    socket.onclose = () => {
      setStatus("disconnected, reconnecting…", false);
      delete worker.dataset.pid;
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
    socket.send(JSON.stringify({ text: text }));
    input.value = "";
    input.focus();
  });
  connect();
})();
