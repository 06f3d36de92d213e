// bench/peers/haraka (relay mode): every outbound delivery goes to the bench's sink on loopback,
// whatever the recipient's domain — the fixed relay ("smarthost") an administrator would set,
// as a get_mx hook (Haraka 3.3.4's outbound has no relay-host setting). Host and port come from
// config/bench_sink_mx.ini, which bench/lib/haraka.ts fills in. No DNS lookup is made.
'use strict';

exports.register = function () {
  this.cfg = this.config.get('bench_sink_mx.ini').main;
};

exports.hook_get_mx = function (next, _hmail, _domain) {
  next(OK, { exchange: this.cfg.host || '127.0.0.1', port: Number(this.cfg.port), priority: 0 });
};
