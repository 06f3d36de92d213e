// The live dashboard served at GET /: one self-contained HTML page (no framework, no external
// request) that polls GET /v1/stats every second, derives per-second rates from successive
// snapshots and draws the last two minutes as SVG lines; below, the message browser
// (dashboard-browser.ts). A TypeScript constant so tsc ships it with the rest (no build step,
// no static files). Style and script are kept apart so routes/dashboard-v1.ts can pin them in
// the Content-Security-Policy by hash.
//
// Token: when POSTERN_API_TOKEN is set, open /#token=<token>. The fragment never leaves the
// browser; the page moves it to sessionStorage, removes it from the address bar, and sends it
// as `Authorization: Bearer` on each poll. Domain names are attacker-chosen (RCPT TO): they
// are only ever set with textContent.
import { BROWSER_HTML, BROWSER_SCRIPT, BROWSER_STYLE } from './dashboard-browser.js';

export const DASHBOARD_STYLE = `
:root{--bg:#f6f7f9;--card:#fff;--fg:#1d2330;--muted:#6b7385;--line:#e3e6ec;--received:#2563eb;--delivered:#16a34a;--deferred:#d97706;--bounced:#dc2626;--bar:#94a3b8}
@media (prefers-color-scheme:dark){:root{--bg:#12151b;--card:#1b1f27;--fg:#e6e9ef;--muted:#8b93a5;--line:#2b313c;--bar:#566173}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-variant-numeric:tabular-nums}
header{display:flex;align-items:center;gap:12px;padding:12px 20px;border-bottom:1px solid var(--line);background:var(--card)}
header h1{margin:0;font-size:17px;font-weight:650;letter-spacing:.2px}
header .sub{color:var(--muted);font-size:13px}
#status{margin-left:auto;display:flex;align-items:center;gap:8px;color:var(--muted);font-size:13px}
#dot{width:9px;height:9px;border-radius:50%;background:var(--bar)}
#dot.ok{background:var(--delivered)}#dot.err{background:var(--bounced)}
main{padding:16px 20px;max-width:1400px;margin:0 auto}
#error{display:none;margin:0 0 14px;padding:10px 14px;border:1px solid var(--bounced);border-radius:8px;color:var(--bounced);background:var(--card)}
#error.show{display:block}
.grid{display:grid;gap:14px}
.rates{grid-template-columns:repeat(4,minmax(0,1fr))}
.lower{grid-template-columns:minmax(0,1.1fr) minmax(0,1fr) minmax(0,.9fr);margin-top:14px}
@media (max-width:1100px){.rates{grid-template-columns:repeat(2,minmax(0,1fr))}.lower{grid-template-columns:repeat(2,minmax(0,1fr))}.lower .wide{grid-column:1/-1}}
@media (max-width:640px){.rates,.lower{grid-template-columns:1fr}.split{grid-template-columns:1fr}}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;min-width:0}
.card h2{margin:0 0 8px;font-size:12px;font-weight:600;text-transform:uppercase;letter-spacing:.6px;color:var(--muted)}
.rate .big{font-size:30px;font-weight:650;line-height:1.1}
.rate .big small{font-size:13px;font-weight:500;color:var(--muted);margin-left:4px}
.rate .total{color:var(--muted);font-size:13px;margin-top:2px}
.rate .total b{color:var(--fg);font-weight:600}
.rate h2 i{display:inline-block;width:8px;height:8px;border-radius:2px;margin-right:6px;vertical-align:0}
svg.chart{display:block;width:100%;height:90px}
svg.chart .grid-line{stroke:var(--line);stroke-width:1}
.chartwrap{position:relative;margin-top:10px}
.chartwrap span{position:absolute;top:-2px;font-size:10px;color:var(--muted)}
.chartwrap .max{left:0}.chartwrap .span{right:0}
svg.chart .ln{fill:none;stroke-width:1.6;stroke-linejoin:round;vector-effect:non-scaling-stroke}
svg.chart .ar{fill-opacity:.12;stroke:none}
.k-received{background:var(--received)}.k-delivered{background:var(--delivered)}.k-deferred{background:var(--deferred)}.k-bounced{background:var(--bounced)}
.s-received{stroke:var(--received)}.s-delivered{stroke:var(--delivered)}.s-deferred{stroke:var(--deferred)}.s-bounced{stroke:var(--bounced)}
.f-received{fill:var(--received)}.f-delivered{fill:var(--delivered)}.f-deferred{fill:var(--deferred)}.f-bounced{fill:var(--bounced)}
.card h2 em{font-style:normal;text-transform:none;letter-spacing:0;font-weight:400;margin-left:4px}
.kv{display:grid;grid-template-columns:auto 1fr auto;gap:6px 10px;align-items:center}
.kv span{color:var(--muted)}
.kv .bar{height:8px;border-radius:4px;background:var(--line);overflow:hidden}
.kv .bar div{height:100%;width:0;background:var(--bar);transition:width .3s}
.kv b{text-align:right;font-weight:600;min-width:3ch}
.queue-head{display:flex;align-items:baseline;gap:8px;margin-bottom:10px}
.queue-head .big{font-size:30px;font-weight:650;line-height:1.1}
.queue-head .unit{color:var(--muted)}
.split{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.split h3{margin:0 0 6px;font-size:12px;font-weight:500;color:var(--muted)}
table{width:100%;border-collapse:collapse}
td{padding:5px 0;border-bottom:1px solid var(--line)}
tr:last-child td{border-bottom:0}
td.n{text-align:right;font-weight:600;width:7ch}
td.d{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;max-width:0}
.empty{color:var(--muted);font-style:italic}
.proc{display:grid;grid-template-columns:1fr auto;gap:6px 10px}
.proc span{color:var(--muted)}.proc b{text-align:right;font-weight:600}
.dests{margin-top:14px}
.dests table{table-layout:fixed}
.dests th{padding:4px 6px 6px 0;text-align:right;font-size:11px;font-weight:600;color:var(--muted);text-transform:uppercase;letter-spacing:.4px;border-bottom:1px solid var(--line)}
.dests th.l{text-align:left}
.dests td{padding:5px 6px 5px 0}
.dests td.n{width:auto}
.dests td.r{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;color:var(--muted);font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
.dests col.dest{width:26%}.dests col.reply{width:34%}
${BROWSER_STYLE}`;

export const DASHBOARD_SCRIPT = `
'use strict';
(function () {
  var POLL_MS = 1000, HISTORY = 120, SERIES = ['received', 'delivered', 'deferred', 'bounced'];
  var token = '';
  try { token = sessionStorage.getItem('postern-token') || ''; } catch (e) {}
  // #token=… (on load, or pasted into the open page) wins over the stored one.
  function readHash() {
    var m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!m) return;
    try { token = decodeURIComponent(m[1]); } catch (e) { token = m[1]; }
    try { sessionStorage.setItem('postern-token', token); } catch (e) {}
    history.replaceState(null, '', location.pathname + location.search);
  }
  readHash();
  window.addEventListener('hashchange', readHash);

  var $ = function (id) { return document.querySelector('[data-testid="' + id + '"]'); };
  var nf = new Intl.NumberFormat();
  var fmt = function (n) { return nf.format(n); };
  var fmtRate = function (r) { return r >= 100 ? nf.format(Math.round(r)) : r.toFixed(1); };
  var fmtBytes = function (b) { var u = ['B', 'KiB', 'MiB', 'GiB']; var i = 0; while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; } return b.toFixed(i ? 1 : 0) + ' ' + u[i]; };
  var set = function (id, text) { var el = $(id); if (el && el.textContent !== text) el.textContent = text; };

  var prev = null;
  var hist = {}; SERIES.forEach(function (s) { hist[s] = []; });

  function totals(s) {
    var d = s.delivery || {};
    return {
      received: (s.smtp.messagesAccepted || 0) + ((s.http && s.http.messagesInjected) || 0),
      delivered: d.delivered || 0, deferred: d.deferred || 0, bounced: d.bounced || 0
    };
  }

  function niceMax(v) {
    if (v <= 1) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v))), f = v / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  }

  function draw(name) {
    var svg = $(name + '-chart'); if (!svg) return;
    var top = niceMax(Math.max.apply(null, [0].concat(hist[name])));
    set(name + '-max', (top >= 1 ? fmt(top) : fmtRate(top)) + '/s');
    var W = 300, H = 70, pts = hist[name];
    var max = niceMax(Math.max.apply(null, [0].concat(pts)));
    var x = function (i) { return W - (pts.length - 1 - i) * (W / (HISTORY - 1)); };
    var y = function (v) { return H - 2 - (v / max) * (H - 14); };
    var line = pts.map(function (v, i) { return x(i).toFixed(1) + ',' + y(v).toFixed(1); }).join(' ');
    var area = pts.length > 1 ? 'M' + x(0).toFixed(1) + ',' + (H - 2) + ' L' + line.split(' ').join(' L') + ' L' + W + ',' + (H - 2) + ' Z' : '';
    svg.innerHTML =
      '<line class="grid-line" x1="0" x2="' + W + '" y1="' + y(max) + '" y2="' + y(max) + '"/>' +
      '<line class="grid-line" x1="0" x2="' + W + '" y1="' + (H - 2) + '" y2="' + (H - 2) + '"/>' +
      (area ? '<path d="' + area + '" class="ar f-' + name + '"/>' : '') +
      (pts.length > 1 ? '<polyline points="' + line + '" class="ln s-' + name + '"/>' : '');
  }

  function bars(prefix, obj, keys) {
    var max = 0; keys.forEach(function (k) { max = Math.max(max, obj[k] || 0); });
    keys.forEach(function (k) {
      var v = obj[k] || 0;
      set(prefix + '-' + k, fmt(v));
      var b = $(prefix + '-' + k + '-bar'); if (b) b.style.width = (max ? (100 * v / max) : 0) + '%';
    });
  }

  function domains(list) {
    var tbody = $('domains');
    tbody.replaceChildren();
    if (!list.length) {
      var tr = document.createElement('tr'), td = document.createElement('td');
      td.className = 'empty'; td.colSpan = 2; td.textContent = 'no pending recipients';
      tr.appendChild(td); tbody.appendChild(tr); return;
    }
    list.forEach(function (e) {
      var tr = document.createElement('tr'), d = document.createElement('td'), n = document.createElement('td');
      d.className = 'd'; d.textContent = e[0]; d.title = e[0];
      n.className = 'n'; n.textContent = fmt(e[1]);
      tr.appendChild(d); tr.appendChild(n); tbody.appendChild(tr);
    });
  }

  // Destination keys and reply texts come from remote servers: textContent only, never markup.
  var REPLY_MAX = 120;
  function cell(tr, cls, text, title) {
    var td = document.createElement('td');
    td.className = cls; td.textContent = text;
    if (title) td.title = title;
    tr.appendChild(td);
  }
  function destinations(list) {
    var tbody = $('destinations');
    tbody.replaceChildren();
    if (!list.length) {
      var tr = document.createElement('tr');
      cell(tr, 'empty', 'no deliveries yet');
      tr.firstChild.colSpan = 10; tbody.appendChild(tr); return;
    }
    list.forEach(function (d) {
      var tr = document.createElement('tr'), p = d.pool, r = d.lastReply;
      tr.setAttribute('data-testid', 'destination-row');
      cell(tr, 'd', String(d.key), String(d.key));
      ['open', 'busy', 'idle', 'waiting'].forEach(function (k) { cell(tr, 'n', p ? fmt(p[k] || 0) : '–'); });
      cell(tr, 'n', fmt(d.delivered || 0));
      cell(tr, 'n', fmt(d.deferred || 0));
      cell(tr, 'n', fmt(d.bounced || 0));
      cell(tr, 'n', fmt(d.waitingForReturn || 0), 'queued messages waiting for this destination to answer again');
      var rt = '';
      if (r) {
        rt = [r.code, r.enhanced].filter(function (x) { return x !== undefined && x !== null; }).join(' ');
        rt = (rt ? rt + ' ' : '') + String(r.text || '');
      }
      var shown = rt.length > REPLY_MAX ? rt.slice(0, REPLY_MAX - 1) + '\u2026' : rt;
      cell(tr, 'r', shown || '–', rt ? rt + (r && r.at ? ' (' + r.at + ')' : '') : '');
      tbody.appendChild(tr);
    });
  }

  // Failures by bounce category: synchronous (bounced, deferred) and from reports (async).
  function failures(b) {
    var tbody = $('failures');
    tbody.replaceChildren();
    var rows = {};
    ((b && b.failures) || []).forEach(function (f) {
      var r = rows[f.category] || (rows[f.category] = { bounced: 0, deferred: 0, async: 0 });
      if (f.kind === 'bounced' || f.kind === 'deferred') r[f.kind] += f.count; else r.async += f.count;
    });
    var cats = Object.keys(rows).sort();
    if (!cats.length) {
      var tr = document.createElement('tr');
      cell(tr, 'empty', 'no failures yet');
      tr.firstChild.colSpan = 4; tbody.appendChild(tr);
    }
    cats.forEach(function (c) {
      var tr = document.createElement('tr');
      tr.setAttribute('data-testid', 'failure-row');
      cell(tr, 'd', String(c));
      cell(tr, 'n', fmt(rows[c].bounced));
      cell(tr, 'n', fmt(rows[c].deferred));
      cell(tr, 'n', fmt(rows[c].async));
      tbody.appendChild(tr);
    });
    var r = b && b.reports;
    set('reports', r ? fmt(r.dsn) + ' DSN, ' + fmt(r.arf) + ' ARF, ' + fmt(r.complaints) + ' complaints, ' + fmt(r.suppressed) + ' suppressed' : 'no bounce processor');
  }

  // Shaping per source × site (docs/alerts.md, "Shaping state in /v1/stats"): sites can be
  // destination keys from remote MX names and replies are remote text, textContent only.
  function shaping(v) {
    var tbody = $('shaping');
    tbody.replaceChildren();
    var list = (v && v.states) || [];
    set('shaping-more', v && v.more ? fmt(v.more) + ' more' : '');
    if (!list.length) {
      var tr = document.createElement('tr');
      cell(tr, 'empty', v ? 'nothing shaped yet' : 'delivery is off');
      tr.firstChild.colSpan = 6; tbody.appendChild(tr); return;
    }
    list.forEach(function (x) {
      var tr = document.createElement('tr');
      tr.setAttribute('data-testid', 'shaping-row');
      cell(tr, 'd', String(x.source));
      cell(tr, 'd', String(x.site), String(x.site));
      cell(tr, 'n', fmt(x.inflight) + ' / ' + (x.window === null ? '∞' : fmt(x.window)) + (x.waiting ? ' (+' + fmt(x.waiting) + ' waiting)' : ''));
      cell(tr, 'n', x.ratePerSecond === null ? '–' : x.ratePerSecond + '/s');
      var sus = x.suspended;
      cell(tr, 'r', sus ? x.suspended.reason + ' until ' + new Date(Date.parse(sus.until)).toLocaleTimeString() : '–', sus ? String(sus.reply) : '');
      cell(tr, 'n', x.warmup ? fmt(x.warmup.sent) + ' / ' + fmt(x.warmup.budget) : '–');
      tbody.appendChild(tr);
    });
  }

  // An alert's value against its threshold, in the rule's unit (docs/alerts.md).
  function alertValue(a) {
    var ms = function (v) { return v >= 7200000 ? Math.round(v / 3600000) + ' h' : v >= 120000 ? Math.round(v / 60000) + ' min' : (Math.round(v / 100) / 10) + ' s'; };
    switch (a.rule) {
      case 'suspended': return 'until ' + new Date(a.value).toLocaleTimeString();
      case 'circuit-open': return 'open';
      case 'redis-down': return 'local limits';
      case 'tls-failures': case 'queue-growth': return fmt(a.value) + ' ≥ ' + fmt(a.threshold);
      case 'queue-age': case 'filter-wait': return ms(a.value) + ' ≥ ' + ms(a.threshold);
      default: return Math.round(a.value * 100) + ' % > ' + Math.round(a.threshold * 100) + ' %';
    }
  }

  // Anomaly alerts (docs/alerts.md): scopes hold destination keys from remote servers, textContent only.
  function alerts(list) {
    var tbody = $('alerts');
    tbody.replaceChildren();
    set('alert-count', list.length ? fmt(list.length) + ' up' : 'none');
    if (!list.length) {
      var tr = document.createElement('tr');
      cell(tr, 'empty', 'no alerts');
      tr.firstChild.colSpan = 4; tbody.appendChild(tr); return;
    }
    list.forEach(function (a) {
      var tr = document.createElement('tr');
      tr.setAttribute('data-testid', 'alert-row');
      cell(tr, 'd', String(a.rule));
      cell(tr, 'd', String(a.scope), String(a.scope));
      cell(tr, 'n', new Date(Date.parse(a.since)).toLocaleTimeString());
      cell(tr, 'n', alertValue(a));
      tbody.appendChild(tr);
    });
  }

  function render(s) {
    var t = totals(s), now = Date.parse(s.time);
    SERIES.forEach(function (k) {
      set(k + '-total', fmt(t[k]));
      if (prev) {
        var dt = (now - prev.time) / 1000, dv = t[k] - prev.t[k];
        // A negative delta means the node restarted: start over from this snapshot.
        var r = dt > 0 && dv >= 0 ? dv / dt : 0;
        hist[k].push(r); if (hist[k].length > HISTORY) hist[k].shift();
        set(k + '-rate', fmtRate(r));
      }
      draw(k);
    });
    prev = { time: now, t: t };
    set('delivery-state', s.delivery ? 'in flight: ' + fmt(s.delivery.inFlight || 0) : 'delivery is off');
    if (s.queue) {
      set('queue-total', fmt(s.queue.total));
      bars('queue-state', s.queue.byState, ['ready', 'scheduled', 'leased', 'held']);
      bars('queue-priority', s.queue.byPriority, ['urgent', 'normal', 'bulk']);
      domains(s.queue.topDomains);
    } else {
      set('queue-total', '–');
    }
    destinations(s.destinations || []);
    failures(s.bounces);
    alerts(s.alerts || []);
    shaping(s.shaping);
    set('filter-utilization', typeof s.filterUtilization === 'number' ? Math.round(s.filterUtilization * 100) + ' %' : 'no filters');
    set('connections', fmt(s.smtp.connections || 0));
    set('rejected', fmt((s.smtp.messagesRejected || 0) + ((s.http && s.http.messagesRejected) || 0)));
    set('commits', fmt(s.commits));
    // per commit that carried enqueues: lease, settle and retry commits carry none
    set('per-commit', s.enqueueCommits ? (s.messagesCommitted / s.enqueueCommits).toFixed(2) : '–');
    set('lag', s.eventLoopLagMs.toFixed(1) + ' ms');
    set('rss', fmtBytes(s.rssBytes));
    set('updated', new Date(now).toLocaleTimeString());
  }

  function status(ok, msg) {
    $('dot').className = ok ? 'ok' : 'err';
    var e = $('error');
    e.textContent = msg || '';
    e.className = msg ? 'show' : '';
  }

  function poll() {
    var ctl = new AbortController(), timer = setTimeout(function () { ctl.abort(); }, 5000);
    var headers = { accept: 'application/json' };
    if (token) headers.authorization = 'Bearer ' + token;
    fetch('v1/stats', { headers: headers, cache: 'no-store', signal: ctl.signal })
      .then(function (res) {
        if (res.status === 401) throw new Error(token ? 'The API token was refused. Open this page as /#token=<POSTERN_API_TOKEN> with the right token.' : 'This node requires the API token: open this page as /#token=<POSTERN_API_TOKEN>.');
        if (!res.ok) throw new Error('GET /v1/stats answered ' + res.status);
        return res.json();
      })
      .then(function (s) { render(s); status(true, ''); })
      .catch(function (err) { status(false, err.name === 'AbortError' ? 'GET /v1/stats timed out' : (err.message || String(err))); })
      .finally(function () { clearTimeout(timer); setTimeout(poll, POLL_MS); });
  }
  poll();
${BROWSER_SCRIPT}
})();
`;

const rateCard = (name: string, label: string): string => `
    <section class="card rate">
      <h2><i class="k-${name}"></i>${label}</h2>
      <div class="big"><span data-testid="${name}-rate">–</span><small>/s</small></div>
      <div class="total">total <b data-testid="${name}-total">–</b></div>
      <div class="chartwrap"><span class="max" data-testid="${name}-max"></span><span class="span">2 min</span>
      <svg class="chart" data-testid="${name}-chart" viewBox="0 0 300 70" preserveAspectRatio="none" aria-label="${label} per second, last 2 minutes"></svg></div>
    </section>`;

const barRow = (prefix: string, key: string): string =>
  `<span>${key}</span><div class="bar"><div data-testid="${prefix}-${key}-bar"></div></div><b data-testid="${prefix}-${key}">–</b>`;

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>postern</title>
<link rel="icon" href="data:,">
<style>${DASHBOARD_STYLE}</style>
</head>
<body>
<header>
  <h1>postern</h1><span class="sub">live</span>
  <div id="status"><span data-testid="dot" id="dot"></span><span>updated <span data-testid="updated">never</span></span></div>
</header>
<main>
  <div id="error" data-testid="error" role="alert"></div>
  <div class="grid rates">${rateCard('received', 'Received')}${rateCard('delivered', 'Delivered')}${rateCard('deferred', 'Deferred')}${rateCard('bounced', 'Bounced')}
  </div>
  <div class="grid lower">
    <section class="card wide">
      <h2>Queue</h2>
      <div class="queue-head"><span class="big" data-testid="queue-total">–</span><span class="unit">messages</span></div>
      <div class="split">
        <div><h3>by state</h3><div class="kv">${['ready', 'scheduled', 'leased', 'held'].map((k) => barRow('queue-state', k)).join('')}</div></div>
        <div><h3>by priority</h3><div class="kv">${['urgent', 'normal', 'bulk'].map((k) => barRow('queue-priority', k)).join('')}</div></div>
      </div>
    </section>
    <section class="card">
      <h2>Busiest domains <em>pending recipients</em></h2>
      <table><tbody data-testid="domains"><tr><td class="empty">–</td></tr></tbody></table>
    </section>
    <section class="card">
      <h2>Node</h2>
      <div class="proc">
        <span>delivery</span><b data-testid="delivery-state">–</b>
        <span>SMTP connections</span><b data-testid="connections">–</b>
        <span>messages rejected</span><b data-testid="rejected">–</b>
        <span>queue commits</span><b data-testid="commits">–</b>
        <span>messages per commit</span><b data-testid="per-commit">–</b>
        <span>event-loop lag</span><b data-testid="lag">–</b>
        <span>resident memory</span><b data-testid="rss">–</b>
        <span>filter worker utilisation</span><b data-testid="filter-utilization">–</b>
      </div>
    </section>
  </div>
  <section class="card dests">
    <h2>Alerts <em data-testid="alert-count">–</em></h2>
    <table>
      <thead><tr><th class="l">rule</th><th class="l">scope</th><th>since</th><th>value</th></tr></thead>
      <tbody data-testid="alerts"><tr><td class="empty" colspan="4">–</td></tr></tbody>
    </table>
  </section>
  <section class="card dests">
    <h2>Shaping <em>per source × site: transactions in flight / window, rate, suspension, warm-up today</em> <em data-testid="shaping-more"></em></h2>
    <table>
      <thead><tr><th class="l">source</th><th class="l">site</th><th>connections</th><th>rate</th><th>suspended</th><th>warm-up</th></tr></thead>
      <tbody data-testid="shaping"><tr><td class="empty" colspan="6">–</td></tr></tbody>
    </table>
  </section>
  <section class="card dests">
    <h2>Failures by category <em>since start; async = from DSNs that came back</em></h2>
    <table>
      <thead><tr><th class="l">category</th><th>bounced</th><th>deferred</th><th>async</th></tr></thead>
      <tbody data-testid="failures"><tr><td class="empty" colspan="4">–</td></tr></tbody>
    </table>
    <div class="total">reports <b data-testid="reports">–</b></div>
  </section>
  <section class="card dests">
    <h2>Destinations <em>busiest next hops since start</em></h2>
    <table>
      <colgroup><col class="dest"><col><col><col><col><col><col><col><col><col class="reply"></colgroup>
      <thead><tr><th class="l">destination</th><th>open</th><th>busy</th><th>idle</th><th>waiting</th><th>delivered</th><th>deferred</th><th>bounced</th><th title="queued messages waiting for this destination to answer again">waiting for return</th><th class="l">last reply</th></tr></thead>
      <tbody data-testid="destinations"><tr><td class="empty" colspan="10">–</td></tr></tbody>
    </table>
  </section>${BROWSER_HTML}
</main>
<script>${DASHBOARD_SCRIPT}</script>
</body>
</html>
`;
