/**
 * A minimal, bounds-checked DER reader for the few certificate fields the
 * signer id and validity checks need: serial number, issuer attributes (in
 * certificate order, multi-valued RDNs flattened) and the validity window.
 *
 * Why not Node's `X509Certificate.issuer`: it is a printable rendering
 * (escaped, `+`-joined multi-valued RDNs), not the attribute values, and its
 * `validFrom` is a locale-style string. Reading the DER gives the exact
 * values Celery's Python side sees.
 */

/** One attribute of a distinguished name. */
export interface NameAttribute {
  /** Dotted object identifier, e.g. `2.5.4.3` for commonName. */
  oid: string;
  /** The decoded string value. */
  value: string;
}

/** The certificate fields Celeriac reads. */
export interface CertificateFields {
  /** Serial number (may be negative in malformed-but-accepted certificates). */
  serial: bigint;
  /** Issuer RDNs in certificate order; each RDN's attributes in DER order. */
  issuer: NameAttribute[][];
  /** notBefore, ms since epoch. */
  notBefore: number;
  /** notAfter, ms since epoch. */
  notAfter: number;
}

/** Thrown by the DER reader; callers wrap it in their own typed error. */
export class DerError extends Error {}

interface Tlv {
  tag: number;
  /** Offset of the first content byte. */
  start: number;
  /** Offset just past the content. */
  end: number;
}

function readTlv(buf: Uint8Array, offset: number, limit: number): Tlv {
  if (offset + 2 > limit) throw new DerError('truncated DER element');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte DER tags are not supported');
  let len = buf[offset + 1]!;
  let pos = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) throw new DerError('indefinite length is not DER');
    if (n > 4) throw new DerError('DER length too large');
    if (pos + n > limit) throw new DerError('truncated DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[pos + i]!;
    pos += n;
  }
  if (pos + len > limit) throw new DerError('DER element runs past its container');
  return { tag, start: pos, end: pos + len };
}

function expect(buf: Uint8Array, offset: number, limit: number, tag: number, what: string): Tlv {
  const t = readTlv(buf, offset, limit);
  if (t.tag !== tag) throw new DerError(`expected ${what}`);
  return t;
}

function decodeOid(bytes: Uint8Array): string {
  if (bytes.length === 0) throw new DerError('empty OID');
  const parts: number[] = [];
  let value = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    value = value * 128 + (b & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER / 128) throw new DerError('OID arc too large');
    if (!(b & 0x80)) {
      if (parts.length === 0) {
        const first = value < 40 ? 0 : value < 80 ? 1 : 2;
        parts.push(first, value - first * 40);
      } else parts.push(value);
      value = 0;
    } else if (i === bytes.length - 1) throw new DerError('truncated OID');
  }
  return parts.join('.');
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decode a directory-string value the way Python's `cryptography` does. */
function decodeString(tag: number, bytes: Uint8Array): string {
  switch (tag) {
    case 0x0c: // UTF8String
      try {
        return UTF8.decode(bytes);
      } catch {
        throw new DerError('invalid UTF-8 in a name attribute');
      }
    case 0x12: // NumericString
    case 0x13: // PrintableString
    case 0x16: // IA5String
    case 0x1a: // VisibleString
    case 0x14: // TeletexString (cryptography reads it as Latin-1)
      return Buffer.from(bytes).toString('latin1');
    case 0x1e: {
      // BMPString: UTF-16BE
      if (bytes.length % 2) throw new DerError('odd-length BMPString');
      const swapped = Buffer.from(bytes);
      swapped.swap16();
      return swapped.toString('utf16le');
    }
    case 0x1c: {
      // UniversalString: UTF-32BE
      if (bytes.length % 4) throw new DerError('bad UniversalString length');
      let s = '';
      for (let i = 0; i < bytes.length; i += 4) {
        const cp = ((bytes[i]! << 24) >>> 0) + (bytes[i + 1]! << 16) + (bytes[i + 2]! << 8) + bytes[i + 3]!;
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) throw new DerError('bad code point in UniversalString');
        s += String.fromCodePoint(cp);
      }
      return s;
    }
    default:
      // Python's join would fail on a non-string value (e.g. a BIT STRING
      // x500UniqueIdentifier): such a certificate has no Celery signer id.
      throw new DerError(`unsupported name attribute type 0x${tag.toString(16)}`);
  }
}

function decodeInteger(bytes: Uint8Array): bigint {
  if (bytes.length === 0) throw new DerError('empty INTEGER');
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  // Two's complement: the top bit set means negative.
  if (bytes[0]! & 0x80) v -= 1n << BigInt(bytes.length * 8);
  return v;
}

function decodeTime(tag: number, bytes: Uint8Array): number {
  const s = Buffer.from(bytes).toString('latin1');
  let m: RegExpExecArray | null;
  let year: number;
  if (tag === 0x17) {
    // UTCTime YYMMDDHHMM[SS]Z; RFC 5280: YY < 50 means 20YY.
    m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?Z$/.exec(s);
    if (!m) throw new DerError('bad UTCTime');
    const yy = Number(m[1]);
    year = yy < 50 ? 2000 + yy : 1900 + yy;
  } else if (tag === 0x18) {
    m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(?:\.\d+)?Z$/.exec(s);
    if (!m) throw new DerError('bad GeneralizedTime');
    year = Number(m[1]);
  } else throw new DerError('expected a validity time');
  const ms = Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6] ?? '0'));
  if (!Number.isFinite(ms)) throw new DerError('bad validity time');
  return ms;
}

function readName(buf: Uint8Array, name: Tlv): NameAttribute[][] {
  const rdns: NameAttribute[][] = [];
  let p = name.start;
  while (p < name.end) {
    const set = expect(buf, p, name.end, 0x31, 'RDN SET');
    const rdn: NameAttribute[] = [];
    let q = set.start;
    while (q < set.end) {
      const atv = expect(buf, q, set.end, 0x30, 'AttributeTypeAndValue');
      const oidTlv = expect(buf, atv.start, atv.end, 0x06, 'attribute OID');
      const valTlv = readTlv(buf, oidTlv.end, atv.end);
      if (valTlv.end !== atv.end) throw new DerError('trailing data in AttributeTypeAndValue');
      rdn.push({
        oid: decodeOid(buf.subarray(oidTlv.start, oidTlv.end)),
        value: decodeString(valTlv.tag, buf.subarray(valTlv.start, valTlv.end)),
      });
      q = atv.end;
    }
    if (rdn.length === 0) throw new DerError('empty RDN');
    rdns.push(rdn);
    p = set.end;
  }
  return rdns;
}

/**
 * Read serial, issuer and validity from a DER-encoded X.509 certificate.
 * Throws `DerError` for anything it cannot read.
 */
export function readCertificateFields(der: Uint8Array): CertificateFields {
  const cert = expect(der, 0, der.length, 0x30, 'Certificate SEQUENCE');
  const tbs = expect(der, cert.start, cert.end, 0x30, 'TBSCertificate SEQUENCE');
  let p = tbs.start;
  let t = readTlv(der, p, tbs.end);
  if (t.tag === 0xa0) {
    // [0] EXPLICIT version
    p = t.end;
    t = readTlv(der, p, tbs.end);
  }
  if (t.tag !== 0x02) throw new DerError('expected serialNumber INTEGER');
  const serial = decodeInteger(der.subarray(t.start, t.end));
  const sigAlg = expect(der, t.end, tbs.end, 0x30, 'signature AlgorithmIdentifier');
  const issuerTlv = expect(der, sigAlg.end, tbs.end, 0x30, 'issuer Name');
  const issuer = readName(der, issuerTlv);
  const validity = expect(der, issuerTlv.end, tbs.end, 0x30, 'Validity');
  const nb = readTlv(der, validity.start, validity.end);
  const na = readTlv(der, nb.end, validity.end);
  return {
    serial,
    issuer,
    notBefore: decodeTime(nb.tag, der.subarray(nb.start, nb.end)),
    notAfter: decodeTime(na.tag, der.subarray(na.start, na.end)),
  };
}
