// The suite's scenarios, one per file, in the order they run.
import type { Scenario } from './common.js';
import { accept } from './accept.js';
import { relay } from './relay.js';
import { relayLarge } from './relay-large.js';
import { single } from './single.js';
import { filters } from './filters.js';
import { fanout } from './fanout.js';
import { sizes } from './sizes.js';
import { concurrency } from './concurrency.js';
import { depth } from './depth.js';
import { http } from './http.js';
import { shaping } from './shaping.js';
import { cluster } from './cluster.js';

export const SCENARIOS: Scenario[] = [accept, relay, relayLarge, single, filters, fanout, sizes, concurrency, depth, http, shaping, cluster];
export * from './common.js';
