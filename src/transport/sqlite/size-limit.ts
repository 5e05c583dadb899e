/**
 * The body limit checked in SQL, before a row is read (issue 20 #7).
 * `octet_length` (SQLite ≥ 3.43) reads only a record's header, never the
 * value, so a 100 MB row is measured without being loaded — by SQLite or
 * by us; `length` would count the characters of a text column by reading
 * it whole. Messages and broadcasts share the column names.
 */

/** The stored size of a row: body, headers, properties, content type and encoding. */
export const ROW_SIZE = 'octet_length(body) + octet_length(headers) + octet_length(properties) + octet_length(content_type) + octet_length(content_encoding)';

/**
 * True for a row whose parts fit the limit bound as `@max`: the body, and
 * the headers, properties and content type/encoding together (each is
 * decoded under the same limit afterwards).
 */
export const FITS = '(octet_length(body) <= @max AND octet_length(headers) + octet_length(properties) + octet_length(content_type) + octet_length(content_encoding) <= @max)';
