// sockeye chat: a small browser client for the event protocol of the classic
// socket.io chat demo, served by a config-only sockeye backend
// (examples/chat/sockeye.conf).
//
//   client -> server: "add user" (name), "new message" (text), "typing", "stop typing"
//   server -> client: "login" {numUsers}, "user joined" {username, numUsers},
//                     "user left" {username, numUsers}, "new message" {username, message},
//                     "typing" {username}, "stop typing" {username}
//
// Everything the server or other users send is inserted with textContent,
// never as HTML.
'use strict';

(() => {
  // A "typing" notice is followed by "stop typing" once the input has been
  // idle this long, so the others see the indicator only while keys move.
  const TYPING_IDLE_MS = 400;
  // After the server itself closed our session (e.g. it restarted) the client
  // does not reconnect on its own; we retry with this back-off.
  const REJOIN_MIN_MS = 2000;
  const REJOIN_MAX_MS = 30000;

  const $ = (id) => document.getElementById(id);
  const ui = {
    login: $('login'),
    loginForm: $('login-form'),
    nickname: $('nickname'),
    chat: $('chat'),
    me: $('me'),
    count: $('user-count'),
    status: $('status'),
    messages: $('messages'),
    typing: $('typing'),
    sendForm: $('send-form'),
    input: $('message-input'),
  };

  let username = null; // chosen nickname, null until the login form is sent
  let joined = false; // the server confirmed "add user" on the current connection
  let welcomed = false; // a "login" reply arrived once: later ones are rejoins
  let outage = false; // a disconnect or connect error was already announced
  let typing = false;
  let typingTimer = null;
  let rejoinDelay = REJOIN_MIN_MS;
  const typists = new Set();

  // The default transports (polling, then an upgrade to WebSocket) and
  // automatic reconnection with exponential back-off.
  const socket = io();

  // ---- rendering ---------------------------------------------------------

  function colorFor(name) {
    let h = 0;
    for (const ch of String(name)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    return `hsl(${h % 360}, 62%, 38%)`;
  }

  function people(n) {
    return n === 1 ? '1 person in the chat' : `${n} people in the chat`;
  }

  // Appends li to the list, keeping the view at the bottom when it was there.
  function append(li) {
    const list = ui.messages;
    const atEnd = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
    list.appendChild(li);
    if (atEnd) list.scrollTop = list.scrollHeight;
  }

  function notice(kind, text) {
    const li = document.createElement('li');
    li.className = kind === 'error' ? 'notice error' : 'notice';
    li.dataset.testid = 'notice';
    li.dataset.kind = kind;
    li.textContent = text;
    append(li);
  }

  function message(from, text) {
    const name = from == null ? 'anonymous' : String(from);
    const li = document.createElement('li');
    li.dataset.testid = 'message';
    li.dataset.username = name;
    const who = document.createElement('span');
    who.className = 'username';
    who.style.color = colorFor(name);
    who.textContent = name;
    const body = document.createElement('span');
    body.className = 'body';
    body.textContent = typeof text === 'string' ? text : JSON.stringify(text);
    li.append(who, body);
    append(li);
  }

  function setCount(n) {
    if (typeof n !== 'number') return;
    ui.count.hidden = false;
    ui.count.dataset.count = String(n);
    ui.count.textContent = `${n} online`;
  }

  function setStatus(state, text) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
  }

  function renderTyping() {
    const names = [...typists];
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = 'several people are typing…';
    ui.typing.textContent = text;
    ui.typing.dataset.count = String(names.length);
  }

  function setTypist(name, on) {
    if (name == null) return;
    if (on) typists.add(String(name));
    else typists.delete(String(name));
    renderTyping();
  }

  // ---- sending -------------------------------------------------------------

  // Typing notices are only worth sending live: buffered ones would arrive
  // stale after a reconnect, on a session that has not rejoined yet.
  function emitLive(event) {
    if (socket.connected && joined) socket.emit(event);
  }

  function stopTyping() {
    clearTimeout(typingTimer);
    typingTimer = null;
    if (typing) {
      typing = false;
      emitLive('stop typing');
    }
  }

  function onInput() {
    if (!joined) return;
    if (ui.input.value === '') {
      stopTyping();
      return;
    }
    if (!typing) {
      typing = true;
      emitLive('typing');
    }
    clearTimeout(typingTimer);
    typingTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function sendMessage(ev) {
    ev.preventDefault();
    const text = ui.input.value.trim();
    if (text === '') return;
    if (!socket.connected || !joined) {
      // Keep the text: a message buffered now would reach the server before
      // our "add user" on the next connection, without a name.
      notice('error', 'Not connected: your message was not sent.');
      return;
    }
    stopTyping();
    socket.emit('new message', text);
    message(username, text);
    ui.input.value = '';
  }

  function join() {
    if (username !== null && socket.connected) socket.emit('add user', username);
  }

  function login(ev) {
    ev.preventDefault();
    const name = ui.nickname.value.trim();
    if (name === '' || username !== null) return;
    username = name;
    ui.me.textContent = name;
    ui.me.style.color = colorFor(name);
    ui.login.hidden = true;
    ui.chat.hidden = false;
    ui.input.focus();
    join(); // or on "connect", if we are not connected yet
  }

  ui.loginForm.addEventListener('submit', login);
  ui.sendForm.addEventListener('submit', sendMessage);
  ui.input.addEventListener('input', onInput);

  // ---- receiving -----------------------------------------------------------

  socket.on('login', (data) => {
    joined = true;
    rejoinDelay = REJOIN_MIN_MS;
    const n = data && data.numUsers;
    setCount(n);
    const head = welcomed ? `Back in as ${username}` : `Welcome, ${username}`;
    welcomed = true;
    notice('login', typeof n === 'number' ? `${head} — ${people(n)}` : head);
  });

  socket.on('user joined', (data) => {
    if (!data) return;
    setCount(data.numUsers);
    notice('joined', `${data.username} joined — ${people(data.numUsers)}`);
  });

  socket.on('user left', (data) => {
    if (!data) return;
    setTypist(data.username, false);
    setCount(data.numUsers);
    notice('left', `${data.username} left — ${people(data.numUsers)}`);
  });

  socket.on('new message', (data) => {
    if (!data) return;
    setTypist(data.username, false);
    message(data.username, data.message);
  });

  socket.on('typing', (data) => setTypist(data && data.username, true));
  socket.on('stop typing', (data) => setTypist(data && data.username, false));

  // ---- connection state ----------------------------------------------------

  socket.on('connect', () => {
    setStatus('connected', 'connected');
    if (outage && username !== null) notice('reconnected', 'Reconnected.');
    outage = false;
    join();
  });

  socket.on('disconnect', (reason) => {
    joined = false;
    typing = false;
    clearTimeout(typingTimer);
    typists.clear();
    renderTyping();
    ui.count.hidden = true; // stale until the next "login"
    setStatus('disconnected', 'disconnected');
    outage = true;
    let text = 'Connection lost, reconnecting…';
    if (reason === 'io server disconnect') {
      // The server ended the session on purpose (e.g. it restarted); the
      // client library leaves reconnecting to us.
      text = `The server closed the connection, rejoining in ${rejoinDelay / 1000} s…`;
      setTimeout(() => socket.connect(), rejoinDelay);
      rejoinDelay = Math.min(rejoinDelay * 2, REJOIN_MAX_MS);
    } else if (reason === 'io client disconnect') {
      text = 'Disconnected.';
    }
    if (username !== null) notice('disconnected', text);
  });

  socket.on('connect_error', () => {
    setStatus('disconnected', 'server unreachable');
    if (!outage && username !== null) notice('error', 'Cannot reach the server.');
    outage = true;
  });

  socket.io.on('reconnect_attempt', (attempt) => {
    setStatus('connecting', `reconnecting (attempt ${attempt})…`);
  });

  socket.io.on('reconnect_failed', () => {
    setStatus('disconnected', 'offline');
    notice('error', 'Could not reconnect. Reload the page to try again.');
  });
})();
