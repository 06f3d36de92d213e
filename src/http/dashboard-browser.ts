// The dashboard's message browser (dashboard-page.ts puts it in the one page): a search form
// over GET /v1/queue/messages (id, sender, recipient, domain, state; cursor pages), a message
// page (envelope, per-recipient state, last reply and kept attempts, the header fields) and
// the actions hold, release, retry now, delete and bounce, each asked for and then confirmed.
//
// Every value shown (addresses, replies, header values) is hostile text from the network: it
// is only ever set with textContent or a property, never parsed as markup. Actions go through
// the same API as curl, with the Bearer token and no body: the browser adds Origin and
// Sec-Fetch-Site: same-origin, which the request guard (request-guard.ts) requires of them.

export const BROWSER_STYLE = `
.browser form{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:0 0 10px}
.browser input,.browser select,.msg button,.browser button{font:inherit;font-size:13px;padding:5px 8px;border:1px solid var(--line);border-radius:6px;background:var(--bg);color:var(--fg)}
.browser input{width:12em}
.browser button,.msg button{cursor:pointer;background:var(--card)}
.browser button:disabled,.msg button:disabled{opacity:.45;cursor:default}
.browser button[type=submit]{border-color:var(--received);color:var(--received);font-weight:600}
.browser table{table-layout:fixed}
.browser col.id{width:11.5em}.browser col.age{width:6em}.browser col.size{width:7em}.browser col.st{width:7.5em}
.browser td.l{text-align:left;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
button.open{border:0;padding:0;background:none;color:var(--received);font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;cursor:pointer;text-decoration:underline}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;background:var(--line)}
.badge.held{background:var(--deferred);color:#fff}.badge.leased{background:var(--received);color:#fff}.badge.scheduled{background:var(--bar);color:#fff}
.pager{display:flex;gap:10px;align-items:center;margin-top:10px;color:var(--muted);font-size:13px}
.berr{color:var(--bounced);margin:6px 0}
.msg h2 button{float:right;text-transform:none;letter-spacing:0;font-weight:400}
.msg h3{margin:14px 0 6px;font-size:12px;font-weight:600;color:var(--muted);text-transform:uppercase;letter-spacing:.4px}
.msg h3 em{font-style:normal;text-transform:none;letter-spacing:0;font-weight:400;margin-left:4px}
.msg .actions{display:flex;flex-wrap:wrap;gap:8px;margin:4px 0 10px}
.msg .actions .danger{border-color:var(--bounced);color:var(--bounced)}
.confirm{display:flex;flex-wrap:wrap;gap:10px;align-items:center;padding:10px 12px;margin:0 0 10px;border:1px solid var(--deferred);border-radius:8px}
.confirm button.yes{border-color:var(--bounced);color:var(--bounced);font-weight:600}
.result{margin:0 0 10px;font-size:13px}.result.ok{color:var(--delivered)}.result.bad{color:var(--bounced)}
.env{display:grid;grid-template-columns:max-content 1fr;gap:4px 14px}
.env span{color:var(--muted)}.env b{font-weight:500;overflow-wrap:anywhere}
.msg td{overflow-wrap:anywhere;vertical-align:top;padding-right:8px}
.msg col.hn{width:14em}
.msg td.hn{color:var(--muted);overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.msg tr.hist td{padding:0 0 8px 14px;color:var(--muted);font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
.msg tr.hist ol{margin:2px 0 0;padding-left:20px}
.msg td.mono,.browser td.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
[hidden]{display:none!important}
`;

export const BROWSER_HTML = `
  <section class="card dests browser" data-testid="browser">
    <h2>Messages <em>search the queue; open a message to act on it</em></h2>
    <form data-testid="search-form" autocomplete="off">
      <input data-testid="search-id" name="id" placeholder="id (or its start)" maxlength="32" spellcheck="false">
      <input data-testid="search-sender" name="sender" placeholder="sender (<> = none)" maxlength="256" spellcheck="false">
      <input data-testid="search-recipient" name="recipient" placeholder="recipient" maxlength="256" spellcheck="false">
      <input data-testid="search-domain" name="domain" placeholder="pending in domain" maxlength="255" spellcheck="false">
      <select data-testid="search-state" name="state" aria-label="state"><option value="">any state</option><option value="ready">ready (due)</option><option value="scheduled">scheduled</option><option value="leased">leased</option><option value="held">held</option></select>
      <select data-testid="search-limit" name="limit" aria-label="page size"><option value="25">25 a page</option><option value="50" selected>50 a page</option><option value="100">100 a page</option></select>
      <button type="submit" data-testid="search">Search</button>
      <button type="button" data-testid="search-clear">Clear</button>
    </form>
    <div class="berr" data-testid="browse-error" role="alert" hidden></div>
    <table>
      <colgroup><col class="id"><col class="age"><col class="size"><col><col><col class="st"><col></colgroup>
      <thead><tr><th class="l">id</th><th>age</th><th>size</th><th class="l">sender</th><th class="l">recipients</th><th class="l">state</th><th class="l">last reply</th></tr></thead>
      <tbody data-testid="messages"><tr><td class="empty" colspan="7">–</td></tr></tbody>
    </table>
    <div class="pager">
      <button type="button" data-testid="page-prev" disabled>&lsaquo; previous</button>
      <button type="button" data-testid="page-next" disabled>next &rsaquo;</button>
      <span data-testid="page-info"></span>
      <button type="button" data-testid="page-refresh">refresh</button>
    </div>
  </section>
  <section class="card dests msg" data-testid="message" hidden>
    <h2>Message <em data-testid="message-id"></em><button type="button" data-testid="message-close">close</button></h2>
    <div class="actions" data-testid="actions">
      <button type="button" data-action="hold" data-testid="action-hold">hold</button>
      <button type="button" data-action="release" data-testid="action-release">release</button>
      <button type="button" data-action="retry" data-testid="action-retry">retry now</button>
      <button type="button" class="danger" data-action="bounce" data-testid="action-bounce">bounce</button>
      <button type="button" class="danger" data-action="delete" data-testid="action-delete">delete</button>
    </div>
    <div class="confirm" data-testid="confirm" role="alertdialog" hidden>
      <span data-testid="confirm-text"></span>
      <button type="button" class="yes" data-testid="confirm-yes">confirm</button>
      <button type="button" data-testid="confirm-no">cancel</button>
    </div>
    <div class="result" data-testid="action-result" role="status" hidden></div>
    <div class="env" data-testid="envelope"></div>
    <h3>Recipients <em data-testid="recipient-count"></em></h3>
    <table>
      <thead><tr><th class="l">address</th><th class="l">state</th><th>attempts</th><th class="l">last reply</th><th class="l">at</th><th class="l">command, destination</th></tr></thead>
      <tbody data-testid="message-recipients"></tbody>
    </table>
    <h3>Headers <em data-testid="headers-note"></em></h3>
    <table><colgroup><col class="hn"><col></colgroup><tbody data-testid="message-headers"></tbody></table>
  </section>`;

/**
 * Runs inside the dashboard script's function (dashboard-page.ts), which defines `token`,
 * `$` (element by data-testid), `fmt` and `fmtBytes`. No backslash and no backquote in it:
 * it is a TypeScript template literal.
 */
export const BROWSER_SCRIPT = `
  // ---------------------------------------------------------------- message browser
  var ACTIONS = {
    hold: { method: 'POST', suffix: '/hold', ask: 'Hold message {id}? It is not delivered until released.', yes: 'hold', done: 'held' },
    release: { method: 'POST', suffix: '/release', ask: 'Release message {id}? It becomes due now.', yes: 'release', done: 'released: due now' },
    retry: { method: 'POST', suffix: '/retry', ask: 'Retry message {id} now, before its scheduled attempt?', yes: 'retry now', done: 'due now' },
    bounce: { method: 'POST', suffix: '/bounce', ask: 'Bounce message {id}? Every pending recipient fails (550 5.0.0) and the sender gets a DSN. This cannot be undone.', yes: 'bounce', done: 'bounced' },
    'delete': { method: 'DELETE', suffix: '', ask: 'Delete message {id} and its body? No bounce is sent. This cannot be undone.', yes: 'delete', done: 'deleted' }
  };
  var REPLY_SHOWN = 100;
  var browse = { query: '', cursors: [null], next: null, loading: false };
  var current = null; // the message shown: { id, view }
  var pendingAction = null;

  function api(method, path) {
    var headers = { accept: 'application/json' };
    if (token) headers.authorization = 'Bearer ' + token;
    var ctl = new AbortController(), timer = setTimeout(function () { ctl.abort(); }, 10000);
    return fetch(path, { method: method, headers: headers, cache: 'no-store', signal: ctl.signal })
      .then(function (res) {
        return res.text().then(function (t) {
          var j = null;
          try { j = t ? JSON.parse(t) : null; } catch (e) { j = null; }
          return { status: res.status, ok: res.ok, json: j };
        });
      })
      .catch(function (err) { return { status: 0, ok: false, json: null, err: err.name === 'AbortError' ? 'timed out' : String(err.message || err) }; })
      .finally(function () { clearTimeout(timer); });
  }
  function why(r) {
    if (r.status === 401) return 'the API token is missing or refused: open this page as /#token=<POSTERN_API_TOKEN>';
    if (r.json && r.json.error && r.json.error.message) return String(r.json.error.message);
    return r.status ? 'HTTP ' + r.status : 'no answer (' + (r.err || 'network error') + ')';
  }
  function td(tr, cls, text, title) {
    var c = document.createElement('td');
    if (cls) c.className = cls;
    c.textContent = text;
    if (title) c.title = title;
    tr.appendChild(c);
    return c;
  }
  function emptyRow(tbody, cols, text) {
    var tr = document.createElement('tr'), c = td(tr, 'empty', text);
    c.colSpan = cols; tbody.appendChild(tr);
  }
  function age(ms) {
    var s = Math.max(0, Math.round(ms / 1000)), pad = function (n) { return (n < 10 ? '0' : '') + n; };
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm';
    if (s < 86400) return Math.floor(s / 3600) + 'h' + pad(Math.floor((s % 3600) / 60)) + 'm';
    return Math.floor(s / 86400) + 'd' + pad(Math.floor((s % 86400) / 3600)) + 'h';
  }
  function replyText(r) {
    if (!r) return '';
    var code = [r.code, r.enhanced].filter(function (x) { return x !== undefined && x !== null; }).join(' ');
    return (code ? code + ' ' : '') + String(r.text || '');
  }
  function shorten(s, n) { return s.length > n ? s.slice(0, n - 1) + '…' : s; }
  function badge(cell, state) {
    var b = document.createElement('span');
    b.className = 'badge ' + state; b.textContent = state;
    cell.appendChild(b);
  }
  function showError(id, msg) {
    var e = $(id);
    e.textContent = msg || '';
    e.hidden = !msg;
  }

  // The form's fields as a query string (empty ones left out); the server checks each value.
  function formQuery() {
    var q = new URLSearchParams();
    ['id', 'sender', 'recipient', 'domain', 'state'].forEach(function (k) {
      var v = $('search-' + k).value.trim();
      if (v) q.set(k, v);
    });
    q.set('limit', $('search-limit').value);
    return q.toString();
  }

  function loadPage() {
    var after = browse.cursors[browse.cursors.length - 1];
    var qs = browse.query + (after ? '&after=' + encodeURIComponent(after) : '');
    browse.loading = true;
    $('page-info').textContent = 'loading…';
    return api('GET', 'v1/queue/messages?' + qs).then(function (r) {
      browse.loading = false;
      if (!r.ok) {
        showError('browse-error', why(r));
        $('page-info').textContent = '';
        $('page-next').disabled = true;
        return;
      }
      showError('browse-error', '');
      rows(r.json.messages || []);
      browse.next = r.json.next;
      $('page-prev').disabled = browse.cursors.length <= 1;
      $('page-next').disabled = browse.next === null;
      var n = (r.json.messages || []).length;
      var info = 'page ' + browse.cursors.length + ': ' + fmt(n) + ' message' + (n === 1 ? '' : 's');
      if (r.json.scan_limited) info += ' (stopped after reading ' + fmt(r.json.scanned) + ' messages: next searches further)';
      $('page-info').textContent = info;
    });
  }

  function rows(list) {
    var tbody = $('messages'), now = Date.now();
    tbody.replaceChildren();
    if (!list.length) { emptyRow(tbody, 7, browse.cursors.length > 1 || browse.next ? 'no match on this page' : 'no message matches'); return; }
    list.forEach(function (m) {
      var tr = document.createElement('tr');
      tr.setAttribute('data-testid', 'message-row');
      tr.setAttribute('data-id', String(m.id));
      var idc = td(tr, 'l', '');
      var open = document.createElement('button');
      open.type = 'button'; open.className = 'open'; open.textContent = String(m.id);
      open.setAttribute('data-testid', 'open-message');
      open.addEventListener('click', function () { openMessage(String(m.id)); });
      idc.appendChild(open);
      td(tr, 'n', age(now - Date.parse(m.received_at)), String(m.received_at));
      td(tr, 'n', fmtBytes(m.size));
      var sender = m.sender === '' ? '<>' : String(m.sender);
      td(tr, 'l', sender, sender);
      var rc = (m.recipient_addresses || []).map(String), more = m.recipients - rc.length;
      td(tr, 'l', rc.join(', ') + (more > 0 ? ' +' + fmt(more) + ' more' : ''), rc.join(', ') + (more > 0 ? ' and ' + fmt(more) + ' more' : ''));
      badge(td(tr, 'l', ''), String(m.queue_state));
      var rt = replyText(m.last_reply);
      td(tr, 'l mono', shorten(rt, REPLY_SHOWN) || '–', rt);
      tbody.appendChild(tr);
    });
  }

  function search(ev) {
    if (ev) ev.preventDefault();
    browse.query = formQuery();
    browse.cursors = [null];
    browse.next = null;
    return loadPage();
  }

  // ---------------------------------------------------------------- one message
  function kv(parent, key, value) {
    var k = document.createElement('span'), v = document.createElement('b');
    k.textContent = key; v.textContent = value;
    parent.appendChild(k); parent.appendChild(v);
    return v;
  }

  // The recipient's kept attempts (a few, oldest first) in a row under it; text only.
  function historyRow(tbody, r) {
    var hist = Array.isArray(r.history) ? r.history : [];
    if (!hist.length) return;
    var tr = document.createElement('tr'), cell = document.createElement('td'), label = document.createElement('span'), ol = document.createElement('ol');
    tr.className = 'hist';
    tr.setAttribute('data-testid', 'recipient-history');
    cell.colSpan = 6;
    var earlier = Number(r.attempts) - hist.length;
    label.textContent = 'last ' + hist.length + ' attempt' + (hist.length === 1 ? '' : 's') + ', oldest first' + (earlier > 0 ? ' (' + fmt(earlier) + ' earlier not kept)' : '') + ':';
    hist.forEach(function (a) {
      var li = document.createElement('li');
      li.setAttribute('data-testid', 'history-entry');
      li.textContent = String(a.at) + ' ' + (replyText(a) || '(no reply)') + (a.destination ? ' (' + String(a.destination) + ')' : '');
      ol.appendChild(li);
    });
    cell.appendChild(label);
    cell.appendChild(ol);
    tr.appendChild(cell);
    tbody.appendChild(tr);
  }

  function renderMessage(m, headers) {
    var now = Date.now();
    $('message-id').textContent = String(m.id);
    var env = $('envelope');
    env.replaceChildren();
    badge(kv(env, 'state', ''), String(m.queue_state));
    kv(env, 'priority', String(m.priority));
    kv(env, 'sender', m.sender === '' ? '<>' : '<' + m.sender + '>');
    kv(env, 'received', String(m.received_at) + ' (' + age(now - Date.parse(m.received_at)) + ' ago)');
    if (m.state === 'ready') {
      var due = Date.parse(m.next_attempt_at);
      kv(env, 'next attempt', String(m.next_attempt_at) + (due > now ? ' (in ' + age(due - now) + ')' : ' (due)'));
    }
    kv(env, 'attempts', fmt(m.attempts));
    kv(env, 'size', fmtBytes(m.size) + ' (' + fmt(m.size) + ' bytes)');
    var c = m.client;
    if (c) kv(env, 'client', [c.ip, c.helo ? 'HELO ' + c.helo : '', c.hostname ? c.hostname : '', c.tls ? 'TLS' : '', c.authUser ? 'AUTH ' + c.authUser : ''].filter(Boolean).map(String).join(', '));
    if (m.lease) kv(env, 'leased', 'by ' + m.lease.owner + ' until ' + m.lease.expires_at);

    var tbody = $('message-recipients');
    tbody.replaceChildren();
    var pending = 0;
    (m.recipients || []).forEach(function (r) {
      if (r.state === 'pending') pending++;
      var tr = document.createElement('tr'), lr = r.last_reply;
      tr.setAttribute('data-testid', 'recipient-row');
      td(tr, '', String(r.address));
      td(tr, '', String(r.state));
      td(tr, 'n', fmt(r.attempts));
      td(tr, 'mono', replyText(lr) || '–');
      td(tr, '', lr && lr.at ? String(lr.at) : '–');
      td(tr, '', lr ? [lr.command, lr.destination].filter(function (x) { return x !== null && x !== undefined; }).map(String).join(', ') || '–' : '–');
      tbody.appendChild(tr);
      historyRow(tbody, r);
    });
    $('recipient-count').textContent = fmt((m.recipients || []).length) + ' (' + fmt(pending) + ' pending)';

    var hb = $('message-headers');
    hb.replaceChildren();
    if (headers === null) emptyRow(hb, 2, 'headers not available');
    else {
      headers.headers.forEach(function (h) {
        var tr = document.createElement('tr');
        tr.setAttribute('data-testid', 'header-row');
        var name = h.name === '' ? '(no name)' : String(h.name);
        td(tr, 'hn', name, name);
        td(tr, 'mono', String(h.value));
        hb.appendChild(tr);
      });
      if (!headers.headers.length) emptyRow(hb, 2, 'no header fields');
    }
    $('headers-note').textContent = headers && headers.truncated ? 'the first ' + fmtBytes(headers.max_bytes) + ' only' : '';

    var st = m.queue_state;
    $('action-hold').disabled = st === 'held';
    $('action-release').disabled = st !== 'held' && st !== 'scheduled';
    $('action-retry').disabled = st === 'held' || st === 'leased';
    $('action-bounce').disabled = st === 'leased' || pending === 0;
    $('action-delete').disabled = false;
  }

  function gone(id, text) {
    current = null;
    $('message-id').textContent = id;
    $('actions').hidden = true;
    $('envelope').replaceChildren();
    $('message-recipients').replaceChildren();
    $('message-headers').replaceChildren();
    $('recipient-count').textContent = '';
    $('headers-note').textContent = '';
    result(text, false);
  }

  function result(text, good) {
    var e = $('action-result');
    e.textContent = text || '';
    e.className = 'result ' + (good ? 'ok' : 'bad');
    e.hidden = !text;
  }

  // Reads the message and its headers afresh; the action result stays as it is.
  function loadMessage(id) {
    var path = 'v1/queue/messages/' + encodeURIComponent(id);
    return Promise.all([api('GET', path), api('GET', path + '/headers')]).then(function (rs) {
      var m = rs[0], h = rs[1];
      if (m.status === 404) { gone(id, 'message ' + id + ' is no longer in the queue'); return; }
      if (!m.ok) { gone(id, why(m)); return; }
      current = { id: id, view: m.json };
      $('actions').hidden = false;
      renderMessage(m.json, h.ok ? h.json : null);
    });
  }

  function openMessage(id) {
    cancelConfirm();
    result('', true);
    $('message').hidden = false;
    return loadMessage(id).then(function () { $('message').scrollIntoView({ block: 'start' }); });
  }

  function askConfirm(name) {
    if (!current) return;
    var a = ACTIONS[name];
    pendingAction = { name: name, id: current.id };
    $('confirm-text').textContent = a.ask.replace('{id}', current.id);
    $('confirm-yes').textContent = a.yes;
    $('confirm').hidden = false;
    result('', true);
    $('confirm-no').focus();
  }

  function cancelConfirm() {
    pendingAction = null;
    $('confirm').hidden = true;
  }

  function runAction() {
    var p = pendingAction;
    if (!p) return;
    cancelConfirm();
    var a = ACTIONS[p.name];
    $('confirm-yes').disabled = true;
    return api(a.method, 'v1/queue/messages/' + encodeURIComponent(p.id) + a.suffix).then(function (r) {
      $('confirm-yes').disabled = false;
      if (!r.ok) result(p.name + ' refused: ' + why(r), false);
      else {
        var text = 'message ' + p.id + ': ' + a.done;
        if (p.name === 'bounce' && r.json) text += ' (' + fmt((r.json.bounced || []).length) + ' recipient' + ((r.json.bounced || []).length === 1 ? '' : 's') + (r.json.dsn_id ? ', DSN ' + r.json.dsn_id + ' queued' : ', no DSN') + ')';
        result(text, true);
      }
      // Refresh both views. A message deleted or bounced is gone (a bounce fails every pending
      // recipient): nothing to read again.
      var keep = $('action-result').textContent, good = r.ok;
      var removed = good && (p.name === 'delete' || p.name === 'bounce');
      if (removed) gone(p.id, '');
      return Promise.all([loadPage(), removed ? null : loadMessage(p.id)]).then(function () { result(keep, good); });
    });
  }

  $('search-form').addEventListener('submit', search);
  $('search-clear').addEventListener('click', function () {
    ['id', 'sender', 'recipient', 'domain'].forEach(function (k) { $('search-' + k).value = ''; });
    $('search-state').value = '';
    search();
  });
  $('page-next').addEventListener('click', function () {
    if (browse.next === null || browse.loading) return;
    browse.cursors.push(browse.next);
    loadPage();
  });
  $('page-prev').addEventListener('click', function () {
    if (browse.cursors.length <= 1 || browse.loading) return;
    browse.cursors.pop();
    loadPage();
  });
  $('page-refresh').addEventListener('click', function () { loadPage(); });
  $('message-close').addEventListener('click', function () { cancelConfirm(); current = null; $('message').hidden = true; });
  Object.keys(ACTIONS).forEach(function (name) {
    $('action-' + name).addEventListener('click', function () { askConfirm(name); });
  });
  $('confirm-yes').addEventListener('click', runAction);
  $('confirm-no').addEventListener('click', cancelConfirm);
  document.addEventListener('keydown', function (e) { if (e.key === 'Escape' && pendingAction) cancelConfirm(); });
  // A token pasted as #token=… (readHash, registered before this) is used at once.
  window.addEventListener('hashchange', function () { search(); });
  search();
`;
