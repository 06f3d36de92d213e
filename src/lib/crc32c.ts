// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of RFC 4960 Appendix B
// that a PROXY protocol v2 header may carry in its PP2_TYPE_CRC32C TLV. Table-driven, one byte
// at a time: it runs over at most a few hundred bytes once per proxied connection.

const TABLE = new Int32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  TABLE[n] = c;
}

/** The CRC-32C of `bytes`, as an unsigned 32-bit number. */
export function crc32c(bytes: Uint8Array): number {
  let c = -1;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
