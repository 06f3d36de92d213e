// A programmer's error, thrown where a function is called with an argument out of range or of
// the wrong type: the built-in RangeError or TypeError (what callers and tests expect), with the
// code PST_ERR_INVALID_ARGUMENT (as Node's own carry ERR_OUT_OF_RANGE or ERR_INVALID_ARG_TYPE).
// Never an outcome of input from the network or the configuration: those are values or
// PosternErrors with their own codes.

export type InvalidArgument = (RangeError | TypeError) & { readonly code: 'PST_ERR_INVALID_ARGUMENT' };

export function invalidArgument(message: string, kind: 'range' | 'type' = 'range'): InvalidArgument {
  const e = kind === 'range' ? new RangeError(message) : new TypeError(message);
  return Object.assign(e, { code: 'PST_ERR_INVALID_ARGUMENT' as const });
}
