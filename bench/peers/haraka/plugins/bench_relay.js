// bench/peers/haraka: the relay grant the bench's Haraka needs, as haraka-plugin-relay's acl
// (relay_acl_allow=127.0.0.1/32) would give it: connections from loopback may relay.
// Kept local so that bench/.peers needs nothing beyond Haraka itself.
'use strict';

exports.hook_connect_init = function (next, connection) {
  const ip = connection.remote.ip;
  if (ip === '127.0.0.1' || ip === '::1' || ip === '::ffff:127.0.0.1') connection.relaying = true;
  // Haraka leaves Nagle on; see README.md ("TCP_NODELAY").
  if (process.env.BENCH_HARAKA_NODELAY !== '0') connection.client?.targetsocket?.setNoDelay?.(true);
  next();
};
