/**
 * Celery's signer id: how a signed message names the certificate that can
 * verify it, and the key of the certificate store.
 */
import type { X509Certificate } from 'node:crypto';
import { readCertificateFields, type CertificateFields } from './der.ts';
import { CertificateError } from './errors.ts';

// Parsing the DER once per certificate object is enough: certificates are immutable.
const cache = new WeakMap<X509Certificate, CertificateFields>();

/**
 * Serial, issuer attributes and validity window of a certificate, read from
 * its DER. Throws `CertificateError` (`invalid-certificate`) when the
 * certificate cannot be read or has a non-string issuer attribute.
 */
export function certificateFields(cert: X509Certificate): CertificateFields {
  let fields = cache.get(cert);
  if (!fields) {
    try {
      fields = readCertificateFields(cert.raw);
    } catch (err) {
      throw new CertificateError('invalid-certificate', `cannot read certificate ${cert.fingerprint256}: ${(err as Error).message}`, {
        hint: 'use a standard X.509 certificate whose issuer name holds only string attributes',
      });
    }
    cache.set(cert, fields);
  }
  return fields;
}

/**
 * Celery's signer id of a certificate: the values (not the `C=`/`O=` labels)
 * of the issuer's attributes in certificate order, joined by single spaces,
 * then a space and the serial number in decimal — e.g.
 * `XX Celery Interop Test celery-test-signer 4660`.
 *
 * Multi-valued RDNs contribute each of their values, in DER (sorted) order,
 * as Python's `cryptography` iterates them. Values are used verbatim: no
 * RFC 4514 escaping, so `O=a\,b` contributes `a,b`.
 */
export function celerySignerId(cert: X509Certificate): string {
  const { issuer, serial } = certificateFields(cert);
  const values = issuer.flatMap((rdn) => rdn.map((a) => a.value));
  return `${values.join(' ')} ${serial.toString(10)}`;
}
